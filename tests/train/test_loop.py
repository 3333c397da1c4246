"""Training on a tiny random Llama: the math (packing, accumulation), the outcomes, and exact resume."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from chattune.config import TrainConfig
from chattune.data.conversation import read_jsonl
from chattune.data.tokenize import tokenize_conversations
from chattune.errors import ChattuneError
from chattune.train import run
from chattune.train.batching import collate, pack
from chattune.train.loop import layer_lr_scales
from chattune.train.loss import SupervisedLoss
from chattune.train.schedule import lr_at
from tests.helpers import tiny_run_config as config
from tests.helpers import write_jsonl


def tiny_model(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def test_packed_rows_give_the_same_loss_as_one_conversation_per_row(
    tiny_model_dir, tiny_tokenizer, train_file
):
    examples, _ = tokenize_conversations(read_jsonl(train_file)[:12], tiny_tokenizer, max_length=256)
    loss_fn = SupervisedLoss(tiny_model(tiny_model_dir)).eval()
    packed, unpacked = pack(examples, 256, packing=True), pack(examples, 256, packing=False)
    assert len(packed) < len(unpacked) == 12
    with torch.no_grad():
        a = loss_fn(**collate(packed, tiny_tokenizer.pad_token_id))
        b = loss_fn(**collate(unpacked, tiny_tokenizer.pad_token_id))
    assert torch.allclose(a[0], b[0], rtol=1e-5) and a[1] == b[1]


def test_supervised_loss_matches_the_models_own_loss(tiny_model_dir, tiny_tokenizer, train_file):
    (ex,), _ = tokenize_conversations(read_jsonl(train_file)[:1], tiny_tokenizer, max_length=256)
    model = tiny_model(tiny_model_dir).eval()
    batch = collate(pack([ex], 256), tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        ours, _ = SupervisedLoss(model)(**batch)
        ref = model(input_ids=torch.tensor([ex.input_ids]), labels=torch.tensor([ex.labels])).loss
    assert torch.allclose(ours / len(batch["targets"]), ref, rtol=1e-5)


def test_gradient_accumulation_equals_the_larger_batch(tiny_model_dir, train_file, tmp_path):
    """Two micro-batches of 2 accumulate to the gradient of one batch of 4. Adam's first step is
    sign-like (g / (|g| + eps)), so with the usual eps a gradient element near 0 whose last bits depend
    on the summation order (which differs between CPUs) flips a full-size update; eps=1 makes the step
    ~proportional to the gradient, so a wrong scale or weighting of micro-batches shows and rounding does not."""
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    updates = []
    for name, bs, accum in (("big", 4, 1), ("accum", 2, 2)):
        cfg = config(
            tiny_model_dir,
            train_file,
            tmp_path,
            "train.max_steps=1",
            f"train.batch_size={bs}",
            f"train.grad_accum={accum}",
            "data.packing=false",
            f"output.name={name}",
            "eval.every_steps=null",
            "data.val_fraction=0",
            "train.learning_rate=1.0",
            "train.adam_epsilon=1.0",
            # the same rows computed alike; shared prefixes change only the summation order (their
            # loss and gradients: tests/train/test_batching.py)
            "train.share_prefixes=false",
        )
        run(cfg)
        final = load_file(str(cfg.run_dir / "final" / "model.safetensors"))
        updates.append({key: final[key] - base[key] for key in final})
    big, accum = updates
    largest = max(u.abs().max().item() for u in big.values())
    assert largest > 1e-4  # the step moved the weights
    for key in big:
        assert torch.allclose(big[key], accum[key], rtol=1e-3, atol=1e-6 * largest), key


def test_layer_lr_decay_scales_each_layer_below_the_top():
    names = [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
        "model.layers.2.input_layernorm.weight",
        "model.norm.weight",
        "lm_head.weight",
    ]
    scales = layer_lr_scales(names, 0.5)
    assert scales == {
        "model.embed_tokens.weight": 0.125,
        "model.layers.0.self_attn.q_proj.weight": 0.25,
        "model.layers.1.mlp.up_proj.weight": 0.5,
        "model.layers.2.input_layernorm.weight": 1.0,
        "model.norm.weight": 1.0,
        "lm_head.weight": 1.0,
    }
    peft = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"
    top = "base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight"
    assert layer_lr_scales([peft, top], 0.5)[peft] == 0.125
    assert set(layer_lr_scales(names, 1.0).values()) == {1.0}


def test_with_layer_lr_decay_the_bottom_layer_moves_less(tiny_model_dir, train_file, tmp_path):
    """Adam's first step moves each weight by about its group's rate, so the step sizes show the scales."""
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    cfg = config(
        tiny_model_dir,
        train_file,
        tmp_path,
        "train.max_steps=1",
        "train.layer_lr_decay=0.5",
        "train.max_grad_norm=null",
        "eval.every_steps=null",
        "data.val_fraction=0",
    )
    run(cfg)
    final = load_file(str(cfg.run_dir / "final" / "model.safetensors"))

    def moved(key: str) -> float:
        return (final[key] - base[key]).abs().max().item()

    top, bottom = moved("model.layers.1.mlp.up_proj.weight"), moved("model.layers.0.mlp.up_proj.weight")
    assert top == pytest.approx(cfg.train.learning_rate, rel=0.05)
    assert bottom == pytest.approx(cfg.train.learning_rate * 0.5, rel=0.05)


def test_full_fine_tune_lowers_loss_and_writes_every_artifact(
    tiny_model_dir, tiny_tokenizer, train_file, tmp_path
):
    cfg = config(tiny_model_dir, train_file, tmp_path, "train.warmup_steps=2", "output.keep_last=1")
    result = run(cfg)
    run_dir = cfg.run_dir
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r["val_loss"] for r in records if r["split"] == "eval"]
    assert len(evals) == 3 and evals[-1] < evals[0] - 0.3
    train_losses = [r["loss"] for r in records if r["split"] == "train"]
    assert train_losses[-1] < train_losses[0]
    assert result.steps == 12 and result.best_step == 12
    for path in (
        "config.yaml",
        "loss.png",
        "data_stats.json",
        "final/model.safetensors",
        "final/tokenizer.json",
        "final/chattune.yaml",
    ):
        assert (run_dir / path).is_file(), path
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == [
        "step-000012"
    ]  # keep_last=1, best is the last
    ckpt = run_dir / "checkpoints" / "step-000012"
    assert {"optimizer.pt", "rng.pt", "state.json", "model.safetensors", "chattune.yaml"} <= {
        p.name for p in ckpt.iterdir()
    }
    assert (
        json.loads((run_dir / "final" / "chat_defaults.json").read_text())["system_prompt"] == "you are kit"
    )
    reloaded = tiny_model(run_dir / "final")  # plain transformers can load the result: the trained weights
    assert reloaded.config.vocab_size == len(tiny_tokenizer)
    saved, loaded = load_file(str(run_dir / "final" / "model.safetensors")), reloaded.state_dict()
    assert saved and all(torch.equal(loaded[k], v) for k, v in saved.items())
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert any(not torch.equal(base[k], v) for k, v in saved.items())  # and they are not the base's


def test_frozen_embeddings_keep_the_base_values_while_the_layers_learn(tiny_model_dir, train_file, tmp_path):
    cfg = config(tiny_model_dir, train_file, tmp_path, "train.freeze_embeddings=true", "train.max_steps=4")
    run(cfg)
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    tuned = load_file(str(cfg.run_dir / "final" / "model.safetensors"))
    assert torch.equal(base["model.embed_tokens.weight"], tuned["model.embed_tokens.weight"])
    assert not torch.equal(
        base["model.layers.0.mlp.up_proj.weight"], tuned["model.layers.0.mlp.up_proj.weight"]
    )


def test_freezing_embeddings_freezes_an_untied_output_head_too(tiny_tokenizer, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from chattune.config import load_config
    from chattune.train.setup import build_model

    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tiny_tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            tie_word_embeddings=False,
        )
    ).save_pretrained(tmp_path / "untied")
    tiny_tokenizer.save_pretrained(tmp_path / "untied")
    cfg = load_config(None, [f"model.name={tmp_path / 'untied'}", "train.freeze_embeddings=true"])
    model, _ = build_model(cfg)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"model.embed_tokens.weight", "lm_head.weight"}


def test_neftune_noises_the_embeddings_only_while_training(tiny_model_dir, tmp_path):
    from chattune.config import load_config
    from chattune.train.setup import build_model

    cfg = load_config(None, [f"model.name={tiny_model_dir}", "train.neftune_alpha=5"])
    model, _ = build_model(cfg)
    plain, _ = build_model(load_config(None, [f"model.name={tiny_model_dir}"]))
    ids = torch.arange(8).reshape(1, 8)
    embed, plain_embed = model.get_input_embeddings(), plain.get_input_embeddings()
    model.train()
    noise = embed(ids) - plain_embed(ids)
    bound = 5 / (8 * embed.weight.shape[1]) ** 0.5
    assert noise.abs().max() > bound / 10 and noise.abs().max() <= bound + 1e-6
    model.eval()
    assert torch.equal(embed(ids), plain_embed(ids))


def test_lora_writes_adapter_and_merged_model(tiny_model_dir, train_file, tmp_path):
    from chattune.model import load_for_inference

    cfg = config(tiny_model_dir, train_file, tmp_path, "train.method=lora", "lora.r=4", "lora.alpha=8")
    result = run(cfg)
    final = cfg.run_dir / "final"
    assert (final / "adapter" / "adapter_model.safetensors").is_file() and (
        final / "model.safetensors"
    ).is_file()
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    merged = load_file(str(final / "model.safetensors"))
    changed = [k for k in base if "proj" in k and not torch.equal(base[k], merged[k])]
    assert changed, "merging the adapter changed no projection weight"
    model, _, run_cfg = load_for_inference(str(cfg.run_dir))
    assert run_cfg is not None and run_cfg.train.method == "lora"
    records = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    val_loss = {r["step"]: r["val_loss"] for r in records if r["split"] == "eval"}
    assert list(val_loss) == [4, 8, 12]
    assert result.best_metric == min(val_loss.values()) == val_loss[result.best_step]


def test_early_stopping_with_patience(tiny_model_dir, train_file, tmp_path):
    cfg = config(
        tiny_model_dir,
        train_file,
        tmp_path,
        "train.max_steps=40",
        "eval.every_steps=2",
        "eval.patience=2",
        "eval.min_delta=100",
    )
    result = run(cfg)
    assert result.stopped_early and result.steps == 6  # best at 2, no improvement at 4 and 6
    assert result.best_step == 2
    assert (
        json.loads((cfg.run_dir / "final" / "chat_defaults.json").read_text())["from_checkpoint"]
        == "step-000002"
    )


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ((), "step-000006"),
        (("output.final_weights=best",), "step-000002"),
        (("eval.metric=val_loss",), "step-000002"),
    ],
)
def test_final_holds_the_last_weights_unless_selection_was_asked_for(
    tiny_model_dir, train_file, tmp_path, setting, expected
):
    """min_delta=100 makes step 2 the best; with no early stopping and no chosen metric, final/ keeps the
    annealed last weights all the same."""
    cfg = config(
        tiny_model_dir,
        train_file,
        tmp_path,
        "train.max_steps=6",
        "eval.every_steps=2",
        "eval.min_delta=100",
        *setting,
    )
    result = run(cfg)
    assert result.best_step == 2 and result.steps == 6
    assert (
        json.loads((cfg.run_dir / "final" / "chat_defaults.json").read_text())["from_checkpoint"] == expected
    )
    assert result.final_checkpoint == expected and expected in result.summary()


def test_existing_run_is_not_overwritten_without_resume(tiny_model_dir, train_file, tmp_path):
    cfg = config(tiny_model_dir, train_file, tmp_path, "train.max_steps=2")
    run(cfg)
    with pytest.raises(ChattuneError, match="--resume"):
        run(cfg)


def test_a_second_precision_in_one_process_is_a_clear_error(tiny_model_dir, train_file, tmp_path):
    """accelerate keeps one precision per process; chattune no longer resets its private state, so a
    second run in another precision (a notebook, say) gets a one-line error saying what to do."""
    from accelerate import Accelerator

    Accelerator(mixed_precision="bf16")  # an earlier run in this process
    cfg = config(tiny_model_dir, train_file, tmp_path, "train.max_steps=1", "train.precision=fp32")
    with pytest.raises(ChattuneError, match="train.precision=fp32 in a new process"):
        run(cfg)


def test_nothing_to_train_is_a_clear_error(tiny_model_dir, tmp_path):
    f = write_jsonl(
        tmp_path / "t.jsonl",
        [{"messages": [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "x"}]}],
    )
    with pytest.raises(ChattuneError, match="no conversation has an assistant token"):
        run(config(tiny_model_dir, f, tmp_path, "data.max_length=16", "data.val_fraction=0"))


RESUME_SCRIPT = """
import os, signal, sys
from chattune.config import load_config
from chattune.train import run
cfg = load_config(None, sys.argv[3:])
kill_at = int(sys.argv[1])
def killer(step, metrics):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
run(cfg, resume=sys.argv[2] == "resume", on_eval=killer)
"""


@pytest.mark.slow  # three training runs in subprocesses
@pytest.mark.parametrize("method", ["full", "lora"])
def test_sigkill_then_resume_ends_with_identical_weights(method, tiny_model_dir, train_file, tmp_path):
    def launch(name, kill_at, mode):
        overrides = [
            f"model.name={tiny_model_dir}",
            f"data.train_file={train_file}",
            "data.val_fraction=0.25",
            "data.max_length=128",
            "train.learning_rate=3e-3",
            "train.max_steps=16",
            "eval.every_steps=4",
            "output.save_every=3",
            f"output.dir={tmp_path}",
            f"output.name={name}",
            f"train.method={method}",
            "lora.dropout=0.2",
            "train.precision=bf16",
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        return subprocess.run(
            [sys.executable, "-c", RESUME_SCRIPT, str(kill_at), mode, *overrides],
            env=env,
            capture_output=True,
            text=True,
        )

    assert launch("ref", 0, "fresh").returncode == 0
    killed = launch("killed", 12, "fresh")
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "final").exists()
    resumed = launch("killed", 0, "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout and "step-000009" in resumed.stdout
    weights = "model.safetensors" if method == "full" else "adapter/adapter_model.safetensors"
    ref, got = (
        load_file(str(tmp_path / "ref/final" / weights)),
        load_file(str(tmp_path / "killed/final" / weights)),
    )
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("constant", [0.5, 1.0, 1.0, 1.0, 1.0]),
        ("linear", [0.5, 1.0, 2 / 3, 1 / 3, 0.0]),
        ("cosine", [0.5, 1.0, 0.75, 0.25, 0.0]),
        ("step", [0.5, 1.0, 1.0, 0.5, 0.5]),
    ],
)
def test_schedules(kind, expected):
    cfg = TrainConfig(learning_rate=1.0, warmup_steps=1, scheduler=kind, step_size=2, gamma=0.5)
    got = [lr_at(s, cfg, total_steps=5) for s in range(5)]
    assert got == pytest.approx(expected)


def test_holdout_keeps_augmented_copies_with_their_original():
    from chattune.data.conversation import Conversation, Message
    from chattune.train.setup import holdout

    def c(meta, q):
        return Conversation(
            messages=[Message(role="user", content=q), Message(role="assistant", content="a")], meta=meta
        )

    convs = []
    for i in range(30):
        convs += [
            c({"id": f"o{i}"}, f"q{i}"),
            c({"augmented_from": f"o{i}"}, f"Q{i}"),
            c({"augmented_from": f"o{i}"}, f"q{i}?"),
        ]
    convs.append(c({"id": "pinned", "split": "val"}, "pinned"))
    train, val = holdout(convs, 0.2, seed=3)
    assert len(train) + len(val) == len(convs)
    group = lambda x: x.meta.get("augmented_from", x.meta.get("id"))  # noqa: E731
    assert not {group(x) for x in train} & {group(x) for x in val}
    assert "pinned" in {group(x) for x in val}
    assert 5 <= len({group(x) for x in val}) <= 7  # ~20% of 31 groups


@pytest.mark.parametrize(("exported", "expected"), [(None, "64"), ("1024", "1024")])
def test_training_caps_the_onednn_primitive_cache_unless_the_user_set_it(exported, expected):
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    if exported is not None:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = exported
    env["PYTHONPATH"] = os.path.join(os.path.dirname(__file__), "..", "..", "src")  # this checkout's code
    code = "import os, chattune.train; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_shared_prefixes_train_the_same_steps_on_fewer_tokens(tiny_model_dir, train_file, tmp_path, capsys):
    """On by default with per-conversation attention: the run says what it saves, and its first step's
    loss (before any update) and the validation loss after it are the unshared run's."""
    records = {}
    for share in (True, False):
        cfg = config(
            tiny_model_dir,
            train_file,
            tmp_path,
            "train.max_steps=1",
            "train.log_every=1",
            "eval.every_steps=1",
            f"train.share_prefixes={share}",
            f"output.name=share-{share}",
        )
        run(cfg)
        out = capsys.readouterr().out
        assert ("fewer tokens; train.share_prefixes" in out) == share
        lines = (cfg.run_dir / "metrics.jsonl").read_text().splitlines()
        records[share] = {r["split"]: r for r in map(json.loads, lines)}
    for split, key in (("train", "loss"), ("eval", "val_loss")):
        assert records[True][split][key] == pytest.approx(records[False][split][key], rel=1e-5)
