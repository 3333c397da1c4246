"""Performance options change speed and memory, never the math: compiled == eager, real-token counts."""

import json

import pytest
import torch

from chattune.config import load_config
from chattune.data.conversation import read_jsonl
from chattune.data.tokenize import tokenize_conversations
from chattune.train import run
from chattune.train.batching import collate, pack
from chattune.train.loss import SupervisedLoss
from chattune.train.setup import compile_layers
from tests.helpers import support_conversations, tiny_run_config, write_jsonl
from tests.train.helpers import assert_same_loss_and_gradients, loss_and_grads, packed_batch


@pytest.mark.slow  # torch.compile
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
        assert_same_loss_and_gradients(compiled, eager, batch)


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
            "train.recipe=manual",
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
    loss_small, correct_small, grads_small = loss_and_grads(model, batch, chunk_size=7)
    loss_one, correct_one, grads_one = loss_and_grads(model, batch, chunk_size=10_000)
    torch.testing.assert_close(loss_small, loss_one, rtol=1e-5, atol=1e-5)
    assert int(correct_small) == int(correct_one)
    for name, g in grads_one.items():
        torch.testing.assert_close(grads_small[name], g, rtol=1e-4, atol=1e-6, msg=name)


def _plain_cross_entropy(model, batch):
    """The textbook computation: every logit, then cross-entropy at the scored positions."""
    hidden = model.model(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
    ).last_hidden_state
    logits = model.lm_head(hidden[:, :-1]).reshape(-1, model.config.vocab_size)
    return torch.nn.functional.cross_entropy(
        logits[batch["select"]].float(), batch["targets"], reduction="sum"
    )


def test_fused_head_gives_the_gradients_of_plain_cross_entropy(tiny_model_dir, tiny_tokenizer, tmp_path):
    """Training computes the head's gradients inside the forward pass; they must be the textbook ones,
    for every parameter, with the head trained (full) or frozen (as under LoRA)."""
    from transformers import AutoModelForCausalLM

    batch = packed_batch(tiny_tokenizer, tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    for head_trained in (True, False):
        model.lm_head.weight.requires_grad_(head_trained)
        fused_loss, _, fused = loss_and_grads(model, batch, chunk_size=7)  # several chunks
        plain_loss = _plain_cross_entropy(model, batch)
        (plain_loss * 0.5).backward()  # backward's incoming gradient is applied, not assumed to be 1
        torch.testing.assert_close(fused_loss, plain_loss.detach(), rtol=1e-5, atol=1e-5)
        for name, p in model.named_parameters():
            if p.requires_grad:
                torch.testing.assert_close(p.grad, fused[name] * 0.5, rtol=1e-4, atol=1e-7, msg=name)
            else:
                assert name not in fused
        model.zero_grad(set_to_none=True)


def test_fast_dropout_drops_at_rate_p_keeps_the_mean_and_follows_the_seed():
    from chattune.train.cpu_kernels.dropout import FastDropout

    dropout = FastDropout(0.1).train()
    x = torch.ones(1000, 1000, requires_grad=True)
    torch.manual_seed(0)
    y = dropout(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - 0.9) < 0.002  # 1e6 draws: the standard error is 0.0003
    assert abs(y.mean().item() - 1.0) < 0.003  # kept values scaled by 1 / keep rate
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() * y.max().item())  # gradient through the same mask
    torch.manual_seed(0)
    assert torch.equal(dropout(x), y)  # the torch generator decides: seeded runs and resumes repeat
    assert torch.equal(dropout.eval()(x), x)
    columns = (dropout.train()(torch.ones(4000, 4)) != 0).float().mean(0)  # each 16-bit lane is uniform
    assert all(abs(c - 0.9) < 0.02 for c in columns.tolist())


def test_lora_frozen_weights_in_bf16_give_the_autocast_loss(tiny_model_dir, tiny_tokenizer, tmp_path):
    """Under bf16 autocast LoRA's frozen projections are stored in bf16; autocast casts them to bf16
    anyway, so the loss and the adapter gradients must be exactly those of fp32-stored weights."""
    from chattune.train.setup import build_model

    cfg = tiny_run_config(
        tiny_model_dir, tmp_path / "t.jsonl", tmp_path, "train.method=lora", "lora.dropout=0"
    )
    stored_bf16, _ = build_model(
        cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": "bf16"})})
    )
    stored_fp32, _ = build_model(cfg)
    head = stored_bf16.get_output_embeddings()
    linears = [m for m in stored_bf16.modules() if isinstance(m, torch.nn.Linear) and m is not head]
    assert {m.weight.dtype for m in linears if not m.weight.requires_grad} == {torch.bfloat16}
    assert {m.weight.dtype for m in linears if m.weight.requires_grad} == {torch.float32}  # adapters
    assert head.weight.dtype == torch.float32  # tied to the embeddings: the residual stream stays fp32
    batch = packed_batch(tiny_tokenizer, tmp_path)
    results = []
    for model in (stored_bf16, stored_fp32):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = SupervisedLoss(model)(**batch)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    assert torch.equal(results[0][0], results[1][0])
    for name, grad in results[1][1].items():
        assert torch.equal(results[0][1][name], grad), name


def _lora_models(tiny_model_dir, dropout, fused_flags=(True, False)):
    """Identical LoRA models (adapter B made non-zero so the adapter matters), fused or peft's own."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from chattune.train.cpu_kernels.lora import use_fused_lora

    models = []
    for fused in fused_flags:
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        torch.manual_seed(1)
        lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear")
        model = get_peft_model(base, lora)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.05)
        if fused:
            assert use_fused_lora(model) == 7 * 2  # q k v o gate up down, two layers
        models.append(model)
    return models


def test_fused_lora_gives_peft_loss_and_gradients(tiny_model_dir, tiny_tokenizer, tmp_path):
    batch = packed_batch(tiny_tokenizer, tmp_path)
    fused, plain = _lora_models(tiny_model_dir, dropout=0.0)
    (loss_f, _, grads_f), (loss_p, _, grads_p) = (loss_and_grads(m, batch) for m in (fused, plain))
    torch.testing.assert_close(loss_f, loss_p, rtol=1e-6, atol=1e-6)
    assert grads_f.keys() == grads_p.keys() and all("lora_" in n for n in grads_f)
    for name, g in grads_p.items():
        torch.testing.assert_close(grads_f[name], g, rtol=1e-4, atol=1e-7, msg=name)
    # Under bf16 autocast both round to bf16 at the same places up to summation order.
    results = []
    for model in (fused, plain):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(loss_and_grads(model, batch))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=5e-3, atol=0)
    for name, g in results[1][2].items():
        cosine = torch.nn.functional.cosine_similarity(results[0][2][name].flatten(), g.flatten(), dim=0)
        assert cosine > 0.999, name
    with torch.no_grad():  # generation and evaluation run peft's own forward
        torch.testing.assert_close(
            fused(input_ids=batch["input_ids"]).logits, plain(input_ids=batch["input_ids"]).logits
        )


def test_fused_lora_dropout_is_inverted_dropout_on_the_adapter_input():
    """y = x W^T + b + scaling * (dropout(x) A^T) B^T, dropout drawing drop_mask from the torch
    generator: the same output and gradients as writing that formula out with the same mask."""
    from peft import LoraConfig, inject_adapter_in_model

    from chattune.train.cpu_kernels.dropout import drop_mask
    from chattune.train.cpu_kernels.lora import use_fused_lora

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 12))
    layer = inject_adapter_in_model(
        LoraConfig(r=4, lora_alpha=8, lora_dropout=0.3, target_modules=["0"]), net
    )[0]
    assert not layer.base_layer.weight.requires_grad
    torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.1)
    assert use_fused_lora(layer) == 1
    x = torch.randn(2, 50, 16, requires_grad=True)
    torch.manual_seed(7)
    y = layer(x)
    (y * torch.linspace(-1, 1, 12)).sum().backward()
    fused_grads = [
        t.grad.clone() for t in (x, layer.lora_A["default"].weight, layer.lora_B["default"].weight)
    ]
    for t in (x, layer.lora_A["default"].weight, layer.lora_B["default"].weight):
        t.grad = None

    torch.manual_seed(7)
    drop, keep_scale = drop_mask(torch.Size([100, 16]), 0.3, x.device)
    assert 0.2 < drop.float().mean() < 0.4
    dropped = x.reshape(100, 16).masked_fill(drop, 0.0).view(2, 50, 16) * keep_scale
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    expected = layer.base_layer(x) + (dropped @ a.T @ b.T) * layer.scaling["default"]
    torch.testing.assert_close(y, expected)
    (expected * torch.linspace(-1, 1, 12)).sum().backward()
    for got, t in zip(fused_grads, (x, a, b), strict=True):
        torch.testing.assert_close(got, t.grad)


def test_fused_lora_keeps_less_for_backward(tiny_model_dir, tiny_tokenizer, tmp_path):
    """What a bf16 LoRA forward keeps for backward (distinct storages): the shared input cast and
    boolean masks instead of a cast and a dropout output per projection."""
    batch = packed_batch(tiny_tokenizer, tmp_path)

    def saved_bytes(model):
        storages = {}

        def keep(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with (
            torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t),
            torch.autocast("cpu", dtype=torch.bfloat16),
        ):
            SupervisedLoss(model)(**batch)
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        return sum(n for ptr, n in storages.items() if ptr not in weights)

    fused, plain = (saved_bytes(m) for m in _lora_models(tiny_model_dir, dropout=0.1))
    assert fused < 0.72 * plain, (fused, plain)  # 0.66 on this tiny model; 0.5 on SmolLM2-135M


def test_silu_mul_mlp_gives_bitwise_the_autograd_gradients_and_keeps_less(
    tiny_model_dir, tiny_tokenizer, tmp_path
):
    from transformers import AutoModelForCausalLM

    from chattune.train.cpu_kernels.mlp import use_silu_mul

    batch = packed_batch(tiny_tokenizer, tmp_path)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    patched = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert use_silu_mul(patched) == 2
    for precision in (torch.float32, torch.bfloat16):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == torch.bfloat16):
            (loss_p, _, grads_p), (loss_s, _, grads_s) = (loss_and_grads(m, batch) for m in (plain, patched))
        assert torch.equal(loss_p, loss_s)
        assert grads_p.keys() == grads_s.keys()
        for name, g in grads_p.items():
            assert torch.equal(grads_s[name], g), name

    def saved_count(model):
        count = 0

        def keep(t):
            nonlocal count
            count += 1
            return t

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            model.model.layers[0].mlp(torch.randn(2, 5, 32))
        return count

    assert saved_count(patched) < saved_count(plain)


def test_grouped_kv_attention_on_cpu_gives_the_same_loss_and_is_undone(
    tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch
):
    import os

    from transformers import AutoModelForCausalLM

    from chattune.train.cpu_kernels import grouped_kv_in_cpu_attention

    monkeypatch.delenv("TRANSFORMERS_SDPA_FORCE_GQA", raising=False)
    key_heads = []  # what SDPA is handed: copied key heads, or the grouped ones
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording_sdpa(query, key, value, *args, **kwargs):
        key_heads.append(key.shape[1])
        return sdpa(query, key, value, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording_sdpa)
    batch = packed_batch(tiny_tokenizer, tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    heads, kv_heads = model.config.num_attention_heads, model.config.num_key_value_heads
    assert kv_heads < heads
    loss_copied, _, grads_copied = loss_and_grads(model, batch)
    assert set(key_heads) == {heads}
    key_heads.clear()
    restore = grouped_kv_in_cpu_attention(torch.device("cpu"))
    assert os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] == "1"
    loss_grouped, _, grads_grouped = loss_and_grads(model, batch)
    assert set(key_heads) == {kv_heads}
    restore()
    assert "TRANSFORMERS_SDPA_FORCE_GQA" not in os.environ
    torch.testing.assert_close(loss_grouped, loss_copied, rtol=1e-5, atol=1e-5)
    for name, g in grads_copied.items():
        torch.testing.assert_close(grads_grouped[name], g, rtol=1e-4, atol=1e-6, msg=name)
    grouped_kv_in_cpu_attention(torch.device("meta"))()  # other devices: untouched
    assert "TRANSFORMERS_SDPA_FORCE_GQA" not in os.environ


def test_fused_layers_under_gradient_checkpointing_give_the_same_gradients(
    tiny_model_dir, tiny_tokenizer, tmp_path
):
    """Checkpointing recomputes each layer's forward in backward: the shared input cast, the dropout
    masks (the generator state is replayed) and SiluMul must come out the same the second time."""
    from chattune.train.cpu_kernels.mlp import use_silu_mul

    batch = packed_batch(tiny_tokenizer, tmp_path)
    results = []
    for checkpointing in (False, True):
        model = _lora_models(tiny_model_dir, dropout=0.2, fused_flags=(True,))[0]
        use_silu_mul(model)
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(loss_and_grads(model, batch))
    (loss_plain, _, grads_plain), (loss_ckpt, _, grads_ckpt) = results
    assert torch.equal(loss_plain, loss_ckpt)
    for name, g in grads_plain.items():
        assert torch.equal(grads_ckpt[name], g), name


def test_fused_lora_leaves_dora_to_peft():
    import copy

    from peft import LoraConfig, inject_adapter_in_model

    from chattune.train.cpu_kernels.lora import use_fused_lora

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 12))
    plain = inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, use_dora=True, target_modules=["0"]), net)
    torch.nn.init.normal_(plain[0].lora_B["default"].weight, std=0.1)
    fused = copy.deepcopy(plain)
    assert use_fused_lora(fused) == 1
    x = torch.randn(3, 16)
    torch.testing.assert_close(fused(x), plain(x), rtol=0, atol=0)
