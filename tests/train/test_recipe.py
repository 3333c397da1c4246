"""train.recipe=auto: what it chooses, that the user's keys win, and that saved configs stay auto."""

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from chattune.config import RunConfig, load_config
from chattune.train.recipe import DataShape, resolve_recipe
from chattune.train.setup import apply_recipe, tokenize_data, total_steps
from tests.helpers import support_conversations, write_jsonl

# 400 support conversations whose shared beginnings (the system prompt) are 40% of their tokens
SUPPORT_SET = DataShape(conversations=400, longest=240, tokens=400 * 110, prefix_share=0.4)


def config(tmp_path: Path, text: str = "", overrides: list[str] | None = None) -> RunConfig:
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  name: embedded\n" + text)
    return load_config(path, overrides)


def test_a_default_config_gets_enough_steps_to_learn(tmp_path):
    cfg, choices = resolve_recipe(config(tmp_path), SUPPORT_SET, n_params=135_000_000)
    chosen = {c.key: c.value for c in choices}
    assert set(chosen) == {
        "data.max_length",
        "data.max_copies",
        "train.epochs",
        "train.batch_size",
        "train.grad_accum",
        "train.learning_rate",
        "train.warmup_ratio",
        "train.rehearsal",
        "train.scope_pairs",
        "train.clarify_pairs",
        "train.freeze_embeddings",
    }
    assert cfg.train.scope_pairs == 0  # this shape redirects nothing
    assert cfg.train.clarify_pairs == 0  # ... and asks nothing back
    assert cfg.train.freeze_embeddings
    assert cfg.train.common_directions == 0  # an option, not chosen (README, Recipe auto)
    assert cfg.train.layer_lr_decay == 1.0  # an option, not chosen (README, Recipe auto)
    assert cfg.data.max_length == 256  # the longest conversation (240) rounded up to a power of two
    assert cfg.train.epochs == 2.1  # three passes would compute 79,200 tokens: bounded at ~56,000
    assert 1.5e-4 <= cfg.train.learning_rate <= 2.5e-4
    # ~2 conversations per 256-token row: a step of a few rows, so ~100 steps, not the old 8
    rows = 400 * 110 / (256 * 0.93)
    steps = cfg.train.epochs * rows / (cfg.train.batch_size * cfg.train.grad_accum)
    assert 60 <= steps <= 200
    assert all(c.why for c in choices)


def test_smaller_sets_get_more_epochs_and_larger_models_a_smaller_rate(tmp_path):
    small, _ = resolve_recipe(config(tmp_path), DataShape(100, 200, 100 * 100), 135_000_000)
    large, _ = resolve_recipe(config(tmp_path), DataShape(10_000, 200, 10_000 * 100), 135_000_000)
    assert small.train.epochs == 5.6 and large.train.epochs == 1  # 10 passes of 10,000 tokens: bounded
    big_model, _ = resolve_recipe(config(tmp_path), SUPPORT_SET, 1_700_000_000)
    assert big_model.train.learning_rate < 0.5 * small.train.learning_rate
    lora, choices = resolve_recipe(
        config(tmp_path, overrides=["train.method=lora"]), SUPPORT_SET, 135_000_000
    )
    assert lora.train.learning_rate >= 5 * small.train.learning_rate
    assert "train.freeze_embeddings" not in {c.key for c in choices}  # LoRA never trains them


def test_passes_beyond_the_first_are_bounded_by_the_data_s_tokens(tmp_path):
    # ~400 conversations under a one-line system prompt, and the same under a long shared one: about the
    # same tokens computed a pass, so about the same passes, bounded below the three 1,200 seen asks for
    short, _ = resolve_recipe(config(tmp_path), DataShape(380, 150, 380 * 71, prefix_share=0.2), 135_000_000)
    long, choices = resolve_recipe(
        config(tmp_path), DataShape(380, 200, 380 * 107, prefix_share=0.42), 135_000_000
    )
    assert (short.train.epochs, long.train.epochs) == (2.5, 2.3)
    computed = 380 * 107 * (1 - 0.42)
    assert long.train.epochs * computed <= 56_000 < (long.train.epochs + 0.1) * computed
    assert "56,000 computed" in {c.key: c.why for c in choices}["train.epochs"]
    # a set that computes little a pass gets the passes its size asks for
    tiny_rows, _ = resolve_recipe(config(tmp_path), DataShape(380, 60, 380 * 40), 135_000_000)
    assert tiny_rows.train.epochs == 3
    # a large set of long conversations is still seen once in full, whatever its tokens
    huge, _ = resolve_recipe(config(tmp_path), DataShape(2_000, 900, 2_000 * 400), 135_000_000)
    assert huge.train.epochs == 1


def test_keys_the_user_sets_win_and_manual_changes_nothing(tmp_path):
    cfg = config(
        tmp_path,
        "train:\n  learning_rate: 5.0e-5\n",
        ["train.epochs=4", "train.freeze_embeddings=false"],
    )
    resolved, choices = resolve_recipe(cfg, SUPPORT_SET, 135_000_000)
    assert resolved.train.learning_rate == 5e-5 and resolved.train.epochs == 4
    assert not resolved.train.freeze_embeddings
    assert not {"train.learning_rate", "train.epochs", "train.freeze_embeddings"} & {c.key for c in choices}
    manual = config(tmp_path, overrides=["train.recipe=manual"])
    same, choices = resolve_recipe(manual, SUPPORT_SET, 135_000_000)
    assert choices == [] and same.model_dump() == manual.model_dump()


def test_a_saved_config_lets_auto_choose_again(tmp_path):
    """A run's config.yaml, a sweep trial or best.yaml loaded again must not freeze auto's choices (or
    the class defaults) as if the user had set them."""
    cfg = config(tmp_path, overrides=["train.epochs=3"])
    resolved, _ = resolve_recipe(cfg, SUPPORT_SET, 135_000_000)
    saved = tmp_path / "saved.yaml"
    saved.write_text(resolved.to_yaml())
    again = load_config(saved)
    assert again.user_set("train", "epochs")  # the user's key stays the user's
    assert not again.user_set("train", "learning_rate") and not again.user_set("data", "max_length")
    resolved_again, _ = resolve_recipe(again, SUPPORT_SET, 135_000_000)
    assert resolved_again.model_dump() == resolved.model_dump()


def test_validate_and_train_resolve_the_same_recipe_and_step_count(tmp_path, tiny_model_dir):
    train_file = write_jsonl(tmp_path / "train.jsonl", support_conversations(60))
    cfg = load_config(None, [f"model.name={tiny_model_dir}", f"data.train_file={train_file}"])
    from chattune.model import load_tokenizer
    from chattune.train.batching import pack

    data = tokenize_data(cfg, load_tokenizer(cfg.model))
    resolved, choices = apply_recipe(cfg, data)
    again, _ = apply_recipe(cfg, data)
    assert choices and resolved.model_dump() == again.model_dump()
    rows = pack(data.train, resolved.data.max_length)
    micro = -(-len(rows) // resolved.train.batch_size)
    assert total_steps(resolved.train, micro) >= 2 * resolved.train.epochs


def test_the_compute_bound_leaves_out_a_shared_system_prompt(tmp_path, tiny_model_dir):
    # The same conversations under one long system prompt, and under a long one that differs in its first
    # word: the same raw tokens, but only the shared one is computed once per micro-batch.
    from chattune.model import load_tokenizer

    manual = " ".join(f"rule {i}: keep replies short and name the product." for i in range(8))
    epochs = {}
    for name, prompt in {"shared": lambda i: manual, "distinct": lambda i: f"{i} {manual}"}.items():
        convs = support_conversations(60)
        for i, c in enumerate(convs):
            c["messages"] = [{"role": "system", "content": prompt(i)}, *c["messages"]]
        train_file = write_jsonl(tmp_path / f"{name}.jsonl", convs)
        cfg = load_config(None, [f"model.name={tiny_model_dir}", f"data.train_file={train_file}"])
        resolved, choices = apply_recipe(cfg, tokenize_data(cfg, load_tokenizer(cfg.model)))
        epochs[name] = (resolved.train.epochs, {c.key: c.why for c in choices}["train.epochs"])
    assert epochs["distinct"][0] < epochs["shared"][0]
    assert "computed a pass" in epochs["distinct"][1]


def test_rehearsal_answers_are_the_base_models_own_and_cached_per_model(tmp_path, monkeypatch):
    from chattune.config import ModelConfig
    from chattune.train import rehearsal

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = []

    def fake_generate(model_cfg, prompts):  # the base model's greedy answers; one never ends
        calls.append(len(prompts))
        return {p: f"answer to {p}" for p in prompts[1:]}

    monkeypatch.setattr(rehearsal, "_generate", fake_generate)
    model = ModelConfig(name="some-org/some-model")  # a hub id: nothing is downloaded, generation is faked
    first = rehearsal.rehearsal_conversations(model, 10, seed=1)
    again = rehearsal.rehearsal_conversations(model, 10, seed=1)
    assert calls == [len(rehearsal.general_prompts())]  # generated once, then read from the cache
    assert [c.model_dump() for c in first] == [c.model_dump() for c in again] and len(first) == 10
    for c in first:  # asked as a user of the base model asks: no system prompt
        assert [m.role for m in c.messages] == ["user", "assistant"]
        assert c.messages[1].content == f"answer to {c.messages[0].content}"
        assert c.meta == {"rehearsal": True}
    other_seed = rehearsal.rehearsal_conversations(model, 10, seed=2)
    assert {c.messages[0].content for c in other_seed} != {c.messages[0].content for c in first}
    assert rehearsal.rehearsal_conversations(model, 0, seed=1) == []


def test_a_time_budget_stops_the_run_with_a_checkpoint_and_final(tmp_path, tiny_model_dir, train_file):
    from chattune.train import run
    from tests.helpers import tiny_run_config

    cfg = tiny_run_config(
        tiny_model_dir, train_file, tmp_path, "train.max_steps=500", "train.time_budget_minutes=0.02"
    )
    result = run(cfg)
    assert result.stopped_early and 0 < result.steps < 500
    assert (cfg.run_dir / "final" / "config.json").is_file()
    from chattune.train.checkpoint import checkpoint_dir

    assert checkpoint_dir(cfg.run_dir / "checkpoints", result.steps).is_dir()


def test_a_time_budget_fits_the_epochs(tmp_path):
    cfg = config(tmp_path, overrides=["train.time_budget_minutes=1"])
    slow, choices = resolve_recipe(cfg, SUPPORT_SET, 135_000_000, seconds_per_token=0.01)
    assert slow.train.epochs < 1 and "time_budget" in {c.key: c.why for c in choices}["train.epochs"]
    fast, _ = resolve_recipe(cfg, SUPPORT_SET, 135_000_000, seconds_per_token=1e-5)
    assert fast.train.epochs == 2.1  # the data's own rule: a generous budget adds nothing
    # Shared prefixes skip 40% of the tokens: the same budget fits more passes, and says why.
    shared, choices = resolve_recipe(
        cfg, replace(SUPPORT_SET, prefix_saving=0.4), 135_000_000, seconds_per_token=0.002
    )
    unshared, _ = resolve_recipe(cfg, SUPPORT_SET, 135_000_000, seconds_per_token=0.002)
    assert shared.train.epochs == pytest.approx(unshared.train.epochs / 0.6, abs=0.1)
    assert "shared prefixes skip ~40%" in {c.key: c.why for c in choices}["train.epochs"]


def test_the_budget_fit_counts_shared_prefixes_where_training_will_share_them(
    tmp_path, tiny_model_dir, monkeypatch
):
    """On CPU with chattune's kernels (a tiny Llama over SDPA) the fit discounts the shared system
    prompt; with the kernels off, or eager attention, nothing is shared and every token counts."""
    import chattune.hardware
    from chattune.model import load_tokenizer

    monkeypatch.setattr(chattune.hardware, "matmul_flops", lambda precision: 5e8)  # the probe, steadied
    # The kernels are CPU-only: on a GPU machine the same config would share nothing.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    train_file = write_jsonl(tmp_path / "train.jsonl", support_conversations(60))
    base = [f"model.name={tiny_model_dir}", f"data.train_file={train_file}", "train.time_budget_minutes=0.05"]
    epochs = {}
    for name, extra in {"shared": [], "kernels off": ["train.cpu_kernels=off"]}.items():
        cfg = load_config(None, [*base, *extra])
        resolved, choices = apply_recipe(cfg, tokenize_data(cfg, load_tokenizer(cfg.model)))
        epochs[name] = (resolved.train.epochs, {c.key: c.why for c in choices}["train.epochs"])
    assert "shared prefixes skip" in epochs["shared"][1] and "shared" not in epochs["kernels off"][1]
    assert epochs["shared"][0] > epochs["kernels off"][0]
    eager = load_config(None, [*base, "model.attn_implementation=eager"])
    _, choices = apply_recipe(eager, tokenize_data(eager, load_tokenizer(eager.model)))
    assert "shared" not in {c.key: c.why for c in choices}["train.epochs"]


def test_rehearsal_generation_keeps_only_answers_that_ended(tiny_model_dir, monkeypatch):
    """The real generation path on the tiny model, then the same path with the generated tokens scripted:
    an answer that reached the end token is kept (decoded, specials dropped); one cut at the cap is not."""
    import torch

    import chattune.model
    from chattune.config import ModelConfig
    from chattune.train import rehearsal

    prompts = ["hello", "how do I reset it"]
    monkeypatch.setattr(rehearsal, "MAX_NEW_TOKENS", 4)
    answers = rehearsal._generate(ModelConfig(name=str(tiny_model_dir)), prompts)
    assert set(answers) <= set(prompts)  # random weights: any that ended, with their text
    assert all(a and a == a.strip() for a in answers.values())

    real_load = chattune.model.load_model_and_tokenizer
    seen = {}

    def load_scripted(model_cfg):
        model, tokenizer = real_load(model_cfg)
        ended = tokenizer("the kettle", add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        capped = tokenizer("hold the dial for", add_special_tokens=False).input_ids
        assert tokenizer.eos_token_id not in capped

        def generate(input_ids, max_new_tokens, pad_token_id, **kwargs):
            seen["prompts"] = [tokenizer.decode(row, skip_special_tokens=True) for row in input_ids]
            rows = [ended, capped]
            width = max(map(len, rows))
            new = torch.tensor([row + [pad_token_id] * (width - len(row)) for row in rows])
            return torch.cat([input_ids, new], dim=1)

        model.generate = generate
        return model, tokenizer

    monkeypatch.setattr(chattune.model, "load_model_and_tokenizer", load_scripted)
    assert rehearsal._generate(ModelConfig(name=str(tiny_model_dir)), prompts) == {"hello": "the kettle"}
    assert all(p in text for p, text in zip(prompts, seen["prompts"], strict=True))  # asked in order


def test_the_embedded_model_uses_its_shipped_answers(monkeypatch):
    from chattune.config import ModelConfig
    from chattune.train import rehearsal

    monkeypatch.setattr(rehearsal, "_generate", lambda *a: (_ for _ in ()).throw(AssertionError("generated")))
    shipped = rehearsal.rehearsal_conversations(ModelConfig(name="embedded"), 200, seed=0)
    assert len(shipped) >= 80  # answers that ended, of the 116 prompts
    assert {c.messages[0].content for c in shipped} <= set(rehearsal.general_prompts())


def test_auto_trains_a_repeated_conversation_once_unless_the_user_says_otherwise(tmp_path):
    from chattune.train.recipe import copies_kept

    assert copies_kept(config(tmp_path)) == 1
    assert copies_kept(config(tmp_path, overrides=["data.max_copies=null"])) is None
    assert copies_kept(config(tmp_path, overrides=["data.max_copies=3"])) == 3
    assert copies_kept(config(tmp_path, overrides=["train.recipe=manual"])) is None  # manual: as written

    repeated = replace(SUPPORT_SET, conversations=250, tokens=250 * 110, copies_left_out=150)
    cfg, choices = resolve_recipe(config(tmp_path), repeated, n_params=135_000_000)
    why = {c.key: c.why for c in choices}["data.max_copies"]
    assert cfg.data.max_copies == 1 and why.startswith("150 conversation(s) repeating another word for word")
    # the passes follow what is left: 250 distinct conversations get more of them than 400 did
    assert (
        cfg.train.epochs > resolve_recipe(config(tmp_path), SUPPORT_SET, n_params=135_000_000)[0].train.epochs
    )
    # saved and loaded again, the config lets auto choose again
    assert "max_copies" not in cfg.to_yaml().split("train:")[0]


def test_a_slow_machine_gets_fewer_passes_never_under_two_and_them_back_when_it_recovers():
    from chattune.train.recipe import PACED_MIN_EPOCHS, PACED_SECONDS, Choice, paced_epochs

    planned = Choice("train.epochs", 4.0, "the data's passes")
    # 40 steps a pass, 4 passes: 160 steps. At 1 s a step they fit; at 2 s a step they would not.
    assert paced_epochs(planned, 40, steps_done=10, seconds=10, seconds_per_step=1.0) is planned
    slow = paced_epochs(planned, 40, steps_done=10, seconds=20, seconds_per_step=2.0)
    assert slow.key == "train.epochs" and slow.value == 3.0  # 10 + 220 / 2 = 120 steps: 3.0 passes
    assert slow.value == math.floor(10 * PACED_SECONDS / 2 / 40) / 10
    assert "pace" in slow.why and "2.00 s a step" in slow.why and "~320 s" in slow.why
    assert "train.epochs=4 trains them all" in slow.why  # how to get the recipe's passes anyway
    # A busy start (the first 20 steps took 60 s) at a full pace since: the passes come back.
    assert paced_epochs(planned, 40, steps_done=20, seconds=60, seconds_per_step=1.0) is planned
    crawling = paced_epochs(planned, 40, steps_done=10, seconds=600, seconds_per_step=60.0)
    assert crawling.value == PACED_MIN_EPOCHS == 2.0  # one pass learned far less than two
    late = paced_epochs(planned, 40, steps_done=100, seconds=6000, seconds_per_step=60.0)
    assert late.value == 2.6  # nor under the steps already taken (101 of 40 a pass)
    fewer = Choice("train.epochs", 1.5, "a larger set")  # the data's own passes, under two, stay
    assert paced_epochs(fewer, 40, steps_done=10, seconds=600, seconds_per_step=60.0) is fewer


def auto_run_config(tiny_model_dir, tmp_path, *overrides):
    """Recipe auto on the tiny model over 60 support conversations: several passes, ~100 steps."""
    train_file = write_jsonl(tmp_path / "train.jsonl", support_conversations(60))
    return load_config(
        None,
        [
            f"model.name={tiny_model_dir}",
            f"data.train_file={train_file}",
            "train.precision=fp32",
            "train.rehearsal=0",  # the tiny model's own answers are not what this test is about
            "train.scope_pairs=0",
            "train.clarify_pairs=0",
            f"output.dir={tmp_path / 'runs'}",
            "output.name=paced",
            *overrides,
        ],
    )


def test_a_run_paces_its_passes_to_the_machine_and_records_why(tmp_path, tiny_model_dir, monkeypatch):
    import json

    import chattune.train.recipe
    from chattune.model import load_tokenizer
    from chattune.train import run
    from chattune.train.batching import pack
    from chattune.train.setup import micro_batches_per_epoch

    cfg = auto_run_config(tiny_model_dir, tmp_path)
    data = tokenize_data(cfg, load_tokenizer(cfg.model))
    planned, _ = apply_recipe(cfg, data)
    micro_per_epoch = micro_batches_per_epoch(
        len(pack(data.train, planned.data.max_length)), planned.train.batch_size, 1
    )
    assert planned.train.epochs > 2 and total_steps(planned.train, micro_per_epoch) >= 2 * 10
    # Any pace is too slow for a millisecond: the run stops giving passes where it stands at its first
    # look (step 10), and ends there with its final model.
    monkeypatch.setattr(chattune.train.recipe, "PACED_SECONDS", 0.001)
    result = run(cfg)
    recorded = {c["key"]: c for c in json.loads((cfg.run_dir / "recipe.json").read_text())}
    paced = recorded["train.epochs"]["value"]
    assert 1 <= paced < planned.train.epochs and "pace" in recorded["train.epochs"]["why"]
    assert result.steps == math.ceil(paced * micro_per_epoch / planned.train.grad_accum) == 11
    assert (
        f"# train.epochs = {paced:g}: fitted to this machine's pace"
        in (cfg.run_dir / "config.yaml").read_text()
    )
    assert (cfg.run_dir / "final" / "config.json").is_file()


def test_a_step_count_the_user_gave_is_never_paced(tmp_path, tiny_model_dir, monkeypatch):
    import json

    import chattune.train.recipe
    from chattune.train import run

    cfg = auto_run_config(tiny_model_dir, tmp_path, "train.max_steps=24")
    monkeypatch.setattr(chattune.train.recipe, "PACED_SECONDS", 0.001)  # any pace is too slow
    assert run(cfg).steps == 24
    recorded = {c["key"]: c for c in json.loads((cfg.run_dir / "recipe.json").read_text())}
    assert recorded["train.epochs"]["value"] > 2 and "pace:" not in recorded["train.epochs"]["why"]


def test_a_resumed_run_goes_on_with_the_passes_it_was_paced_to(tmp_path, tiny_model_dir, monkeypatch):
    """Stopped by a signal right after its pace cut the passes, the run resumes on the recorded passes,
    not on what a faster moment would choose again."""
    import os
    import signal

    import chattune.train.recipe
    from chattune.train import run
    from chattune.train.faults import TrainingInterrupted

    cfg = auto_run_config(tiny_model_dir, tmp_path, "eval.every_steps=10")
    monkeypatch.setattr(chattune.train.recipe, "PACED_SECONDS", 0.001)
    with pytest.raises(TrainingInterrupted):
        run(cfg, on_eval=lambda step, metrics: os.kill(os.getpid(), signal.SIGTERM))
    monkeypatch.setattr(chattune.train.recipe, "PACED_SECONDS", 10**6)  # now any pace fits
    resumed = run(cfg, resume=True)
    assert resumed.steps == 11  # 5.5 paced passes, as the first part of the run recorded
