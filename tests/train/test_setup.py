"""Training data as the run sees it: which tokens carry the loss."""

from rich.console import Console

from chattune.config import load_config
from chattune.model import load_tokenizer
from chattune.train.setup import holdout, load_conversations, tokenize_data
from tests.helpers import support_conversations, write_jsonl
from tests.train.helpers import OneProcess


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
    from chattune.train import rehearsal
    from chattune.train.additions import rehearsal_examples

    monkeypatch.setattr(
        rehearsal, "_generate", lambda model_cfg, prompts: {p: "Sure thing." for p in prompts}
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    quiet = Console(quiet=True)
    rehearsed = rehearsal_examples(with_requests, tokenizer, 40, OneProcess(), quiet)
    plain_rehearsed = rehearsal_examples(replies_only, tokenizer, 40, OneProcess(), quiet)
    assert rehearsed and all(
        a.n_supervised > b.n_supervised for a, b in zip(rehearsed, plain_rehearsed, strict=True)
    )


def _qa(question: str, answer: str = "It costs $9.") -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You are Kit."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }


def test_repeats_past_max_copies_are_left_out_and_named(tmp_path):
    records = [_qa("hi", "Hello!")] * 5 + [_qa(f"price {i}?") for i in range(6)] + [_qa("hi", "Hello!")]
    records[7] = _qa("price 0?")  # line 8 repeats line 6, once: kept at max_copies=2
    path = write_jsonl(tmp_path / "train.jsonl", records)
    data = load_config(None, ["model.name=embedded", f"data.train_file={path}", "data.val_fraction=0"]).data

    loaded = load_conversations(data, seed=0, max_copies=2)
    assert [c.source for c in loaded.train] == [f"{path}:{n}" for n in (1, 2, 6, 7, 8, 9, 10, 11)]
    # every record is accounted for: kept, or named with the record it repeats
    assert loaded.copies_left_out == [(f"{path}:{n}", f"{path}:1") for n in (3, 4, 5, 12)]
    once = load_conversations(data, seed=0, max_copies=1)
    assert len(once.train) == 6 and (f"{path}:8", f"{path}:6") in once.copies_left_out
    everything = load_conversations(data, seed=0)
    assert len(everything.train) == len(records) and not everything.copies_left_out


def test_the_validation_split_never_separates_a_conversation_from_its_repeats(tmp_path):
    from chattune.data.conversation import Conversation

    convs = [Conversation.model_validate(_qa(f"question {i % 40}")) for i in range(200)]  # 5 copies each
    train, val = holdout(convs, 0.1, seed=1)
    asked = lambda part: {c.messages[1].content for c in part}  # noqa: E731
    assert len(train) + len(val) == 200 and len(val) == 4 * 5  # a tenth of the 40 distinct, every copy
    assert not asked(train) & asked(val)
