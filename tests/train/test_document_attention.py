"""Per-document attention is the block-diagonal causal attention of packed rows, computed another way."""

import pytest
import torch
import torch.nn.functional as F

from chattune.train.cpu_kernels.attention import (
    NAME,
    document_attention,
    plan_documents,
    use_document_attention,
)
from chattune.train.loss import SupervisedLoss
from chattune.train.setup import compile_layers
from tests.train.helpers import assert_same_loss_and_gradients, document_attention_model, packed_batch

# Two rows: documents of 5, 9, 3 tokens then 7 of padding (its own block, as collate writes it);
# and 1, 12, 11 (a one-token document and a row with no padding).
LENGTHS = [[5, 9, 3, 7], [1, 12, 11]]


def _position_ids(lengths=LENGTHS) -> torch.Tensor:
    return torch.stack([torch.cat([torch.arange(n) for n in row]) for row in lengths])


def _reference(q, k, v, position_ids):
    """SDPA under the block-diagonal causal mask transformers builds for packed rows."""
    doc = (position_ids == 0).cumsum(1)
    length = position_ids.shape[1]
    mask = (doc[:, None, :, None] == doc[:, None, None, :]) & torch.ones(
        length, length, dtype=torch.bool
    ).tril()
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True).transpose(1, 2)


def test_plan_gives_every_token_one_slot_and_buckets_documents():
    position_ids = _position_ids()
    plan = plan_documents(position_ids)
    tokens = position_ids.numel()
    assert plan.scatter.shape == (tokens,)
    assert torch.equal(plan.gather[plan.scatter], torch.arange(tokens))  # each token's slot holds it
    assert len(set(plan.scatter.tolist())) == tokens
    sizes = plan.buckets.tolist()
    assert sum(m * padded for m, padded in sizes) == plan.gather.numel()
    assert sum(m for m, _ in sizes) == 7  # documents, the padding block included
    # a new document wherever a position is not the previous + 1, as transformers decides
    shifted = plan_documents(torch.tensor([[0, 1, 2, 5, 6, 0, 1]]))
    assert sum(m for m, _ in shifted.buckets.tolist()) == 3


def test_batches_with_a_long_document_stay_on_sdpa(tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch):
    """Past MAX_DOCUMENT tokens a document's whole score matrix would outgrow the flash kernel's
    blockwise memory: no plan, so the model runs SDPA (same loss), and the op is not called."""
    import chattune.train.cpu_kernels.attention as module

    batch = packed_batch(tiny_tokenizer, tmp_path, rows=2)
    longest = int(batch["position_ids"].max()) + 1
    plan = plan_documents(batch["position_ids"])  # within the limit: planned, every token in a slot
    assert plan is not None and plan.scatter.numel() == batch["position_ids"].numel()
    monkeypatch.setattr(module, "MAX_DOCUMENT", longest - 1)
    assert plan_documents(batch["position_ids"]) is None
    calls = []
    monkeypatch.setattr(module, "document_attention", lambda *a: calls.append(a))
    sdpa, documents = _models(tiny_model_dir)
    assert_same_loss_and_gradients(documents, sdpa, batch)
    assert not calls


@pytest.mark.parametrize("kv_heads", [2, 6])  # grouped and plain multi-head
def test_document_attention_equals_masked_sdpa_with_gradients(kv_heads):
    torch.manual_seed(0)
    position_ids = _position_ids()
    batch, length = position_ids.shape
    q = torch.randn(batch, 6, length, 8, dtype=torch.float64, requires_grad=True)
    k = torch.randn(batch, kv_heads, length, 8, dtype=torch.float64, requires_grad=True)
    v = torch.randn(batch, kv_heads, length, 8, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(batch, length, 6, 8, dtype=torch.float64)
    plan = plan_documents(position_ids)

    out = document_attention(q, k, v, plan.gather, plan.scatter, plan.buckets, 8**-0.5)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    expected = _reference(q, k, v, position_ids)
    expected_grads = torch.autograd.grad(expected, (q, k, v), grad_out)

    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_document_attention_is_a_well_formed_custom_op():
    """Fake (meta) shapes, autograd registration and schema, as torch.compile relies on them."""
    torch.manual_seed(0)
    position_ids = _position_ids()
    plan = plan_documents(position_ids)
    q = torch.randn(2, 4, 24, 8, requires_grad=True)
    k = torch.randn(2, 2, 24, 8, requires_grad=True)
    v = torch.randn(2, 2, 24, 8, requires_grad=True)
    torch.library.opcheck(document_attention, (q, k, v, plan.gather, plan.scatter, plan.buckets, 0.35))


def _models(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    sdpa = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa"
    )
    return sdpa, document_attention_model(tiny_model_dir)


@pytest.mark.slow  # torch.compile
def test_model_loss_and_gradients_match_sdpa_eager_and_compiled(tiny_model_dir, tiny_tokenizer, tmp_path):
    batch = packed_batch(tiny_tokenizer, tmp_path, rows=3)
    assert (batch["position_ids"] == 0).sum() > batch["position_ids"].shape[0]  # several documents per row
    sdpa, documents = _models(tiny_model_dir)
    assert_same_loss_and_gradients(documents, sdpa, batch)

    compile_layers(documents)  # the op is one opaque node in the compiled layer
    for rows in (3, 2):  # two batch layouts: new buckets must not need a new graph to be right
        assert_same_loss_and_gradients(documents, sdpa, packed_batch(tiny_tokenizer, tmp_path, rows=rows))


def test_bf16_autocast_loss_and_gradients_are_close_to_sdpa(tiny_model_dir, tiny_tokenizer, tmp_path):
    """Under autocast the op gets bf16 q/k/v like SDPA does (rotary leaves q and k in fp32)."""
    batch = packed_batch(tiny_tokenizer, tmp_path, rows=3)
    sdpa, documents = _models(tiny_model_dir)
    losses, grads = [], []
    for model in (sdpa, documents):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = SupervisedLoss(model)(**batch)
        loss.backward()
        losses.append(loss.item() / len(batch["targets"]))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert abs(losses[0] - losses[1]) < 0.02 * losses[0]
    assert F.cosine_similarity(grads[0], grads[1], dim=0) > 0.99


def test_without_a_plan_the_model_runs_sdpa_and_saves_a_plain_config(tiny_model_dir, tmp_path):
    """Generation and any call that is not the training loss: transformers' own SDPA path."""
    import json

    sdpa, documents = _models(tiny_model_dir)
    prompt = torch.tensor([[3, 5, 7, 9]])
    torch.testing.assert_close(documents(prompt).logits, sdpa(prompt).logits)
    generated = documents.generate(prompt, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(generated, sdpa.generate(prompt, max_new_tokens=4, do_sample=False, pad_token_id=0))
    documents.save_pretrained(tmp_path / "saved")
    assert NAME not in json.dumps(json.loads((tmp_path / "saved" / "config.json").read_text()))


def test_models_on_other_attention_backends_are_left_alone(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    assert not use_document_attention(eager)
    assert eager.config._attn_implementation == "eager"
