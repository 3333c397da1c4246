"""Training data as the run sees it: which tokens carry the loss."""

import contextlib

from rich.console import Console

from chattune.config import load_config
from chattune.model import load_tokenizer
from chattune.train.setup import tokenize_data
from tests.helpers import support_conversations, write_jsonl


def test_train_on_roles_trains_the_requests_and_validation_stays_on_the_replies(
    tmp_path, tiny_model_dir, monkeypatch
):
    train_file = write_jsonl(tmp_path / "train.jsonl", support_conversations(40))
    base = [
        f"model.name={tiny_model_dir}",
        f"data.train_file={train_file}",
        "data.val_fraction=0.25",
        "train.rehearsal=0.25",
    ]
    replies_only = load_config(None, base)
    with_requests = load_config(None, [*base, "data.train_on_roles=[assistant, user]"])
    tokenizer = load_tokenizer(replies_only.model)

    plain, both = tokenize_data(replies_only, tokenizer), tokenize_data(with_requests, tokenizer)
    assert [ex.input_ids for ex in both.train] == [ex.input_ids for ex in plain.train]
    assert both.train_stats.supervised_tokens > plain.train_stats.supervised_tokens
    assert [ex.labels for ex in both.val] == [ex.labels for ex in plain.val]  # val loss: the replies alone

    # rehearsal conversations follow the same roles
    from chattune.train import loop, rehearsal

    monkeypatch.setattr(
        rehearsal, "_generate", lambda model_cfg, prompts: {p: "Sure thing." for p in prompts}
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    class OneProcess:
        is_main_process = True
        main_process_first = staticmethod(contextlib.nullcontext)

    quiet = Console(quiet=True)
    rehearsed = loop._rehearsal_examples(with_requests, tokenizer, 40, OneProcess(), quiet)
    plain_rehearsed = loop._rehearsal_examples(replies_only, tokenizer, 40, OneProcess(), quiet)
    assert rehearsed and all(
        a.n_supervised > b.n_supervised for a, b in zip(rehearsed, plain_rehearsed, strict=True)
    )
