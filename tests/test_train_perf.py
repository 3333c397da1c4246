"""Performance options change speed and memory, never the math: compiled == eager, real-token counts."""

import json

import torch

from chattune.config import load_config
from chattune.data.conversation import read_jsonl
from chattune.data.tokenize import tokenize_conversations
from chattune.train import run
from chattune.train.batching import collate, pack
from chattune.train.loss import SupervisedLoss
from chattune.train.setup import compile_layers
from conftest import support_conversations, write_jsonl


def _loss_and_grads(model, batch, chunk_size=512):
    loss, correct = SupervisedLoss(model, chunk_size=chunk_size)(**batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return loss.detach(), correct, grads


def test_compiled_layers_give_the_eager_loss_and_gradients_on_packed_rows(
    tiny_model_dir, tiny_tokenizer, tmp_path
):
    from transformers import AutoModelForCausalLM

    convs = read_jsonl(write_jsonl(tmp_path / "t.jsonl", support_conversations(16)))
    examples, _ = tokenize_conversations(convs, tiny_tokenizer, max_length=128)
    rows = pack(examples, 128)
    assert any(r.n_conversations > 1 for r in rows)  # the block-diagonal mask is exercised
    batches = [
        collate(rows[:2], tiny_tokenizer.pad_token_id),
        collate(rows[2:3], tiny_tokenizer.pad_token_id),
    ]
    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    compiled = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert compile_layers(compiled) == 2
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # checkpoints are unchanged
    for batch in batches:  # two batch shapes: a recompile (or dynamic shape) must give the same results
        loss_e, correct_e, grads_e = _loss_and_grads(eager, batch)
        loss_c, correct_c, grads_c = _loss_and_grads(compiled, batch)
        torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-5)
        assert int(correct_c) == int(correct_e)
        for name, g in grads_e.items():
            torch.testing.assert_close(grads_c[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_train_logs_real_tokens_and_seconds_per_step(tiny_model_dir, tmp_path):
    train_file = write_jsonl(tmp_path / "train.jsonl", support_conversations(24))
    cfg = load_config(
        None,
        [
            f"model.name={tiny_model_dir}",
            f"data.train_file={train_file}",
            "data.val_fraction=0",
            "data.max_length=128",
            "train.precision=fp32",
            "train.max_steps=3",
            "train.log_every=1",
            "train.batch_size=2",
            "eval.every_steps=null",
            "output.tensorboard=false",
            f"output.dir={tmp_path / 'runs'}",
            "output.name=t",
        ],
    )
    run(cfg)
    records = [json.loads(ln) for ln in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    for r in train:
        assert r["seconds_per_step"] > 0
        tokens = r["tokens_per_second"] * r["seconds_per_step"]
        trained = r["trained_tokens_per_second"] * r["seconds_per_step"]
        assert (
            0 < trained < tokens <= 2 * 128 + 1e-6
        )  # real tokens of at most two rows, more than the targets


def test_head_chunks_change_memory_not_the_loss_or_gradients(tiny_model_dir, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    convs = read_jsonl(write_jsonl(tmp_path / "t.jsonl", support_conversations(16)))
    examples, _ = tokenize_conversations(convs, tiny_tokenizer, max_length=128)
    batch = collate(pack(examples, 128)[:2], tiny_tokenizer.pad_token_id)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert len(batch["targets"]) > 7 * 3  # several chunks of 7
    loss_small, correct_small, grads_small = _loss_and_grads(model, batch, chunk_size=7)
    loss_one, correct_one, grads_one = _loss_and_grads(model, batch, chunk_size=10_000)
    torch.testing.assert_close(loss_small, loss_one, rtol=1e-5, atol=1e-5)
    assert int(correct_small) == int(correct_one)
    for name, g in grads_one.items():
        torch.testing.assert_close(grads_small[name], g, rtol=1e-4, atol=1e-6, msg=name)
