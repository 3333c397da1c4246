"""Packing and shared prefixes: the same targets, and the same loss and gradients as the rows as they are."""

import pytest
import torch

from chattune.data.tokenize import IGNORE_INDEX, TokenizedExample
from chattune.train.batching import MIN_SHARED_PREFIX, collate, pack, prefix_saving
from chattune.train.cpu_kernels.attention import MAX_DOCUMENT, document_attention, plan_documents
from chattune.train.loss import SupervisedLoss
from tests.train.helpers import assert_same_loss_and_gradients, document_attention_model, packed_batch

SYSTEM = list(range(100, 100 + 12))  # a 12-token system prompt every conversation starts with


def _example(i: int, prompt: list[int], reply: list[int]) -> TokenizedExample:
    ids = prompt + reply
    return TokenizedExample(ids, [IGNORE_INDEX] * len(prompt) + reply, source_index=i)


def _targets(batch: dict[str, torch.Tensor]) -> list[tuple[int, int]]:
    """(token before, target) for every scored position: what the loss predicts from what."""
    flat = batch["input_ids"][:, :-1].flatten()
    return sorted(zip(flat[batch["select"]].tolist(), batch["targets"].tolist(), strict=True))


def test_shared_prefixes_keep_every_target_and_lay_each_prefix_out_once():
    examples = [
        _example(0, SYSTEM + [1, 2, 3], [40, 41, 42]),
        _example(1, SYSTEM + [1, 2, 9], [43, 44]),  # shares the system prompt and two user tokens
        _example(2, SYSTEM + [5], [45, 46, 47, 48]),
        _example(3, [7, 7, 7, 7, 7] + [5], [49]),  # another beginning: laid out whole
        _example(4, [7, 7, 7, 7, 7] + [5], [50, 51]),  # too short a common prefix to share
    ]
    rows = pack(examples, 16)
    plain, shared = collate(rows, 0), collate(rows, 0, share_prefixes=True)
    assert _targets(shared) == _targets(plain)
    assert shared["input_ids"].shape[0] == 1
    real = sum(len(e) for e in examples)
    assert shared["input_ids"].numel() == real - 14 - 12  # example 1 keeps 1 own prompt token, 2 none
    branches = sorted(shared["branches"].tolist(), key=lambda b: b[2])
    assert [b[2] for b in branches] == [12, 14]
    ids, pos = shared["input_ids"][0].tolist(), shared["position_ids"][0].tolist()
    for own, source, length in branches:
        assert pos[own] == length  # positions continue the shared prefix, as the unshared row had them
        assert length >= MIN_SHARED_PREFIX and ids[source : source + 12] == SYSTEM


def test_the_estimated_saving_is_what_collating_those_micro_batches_skips():
    """The time-budget fit's estimate, before rows exist, against the shared layout itself."""
    import random

    rng = random.Random(0)
    examples = [
        _example(i, SYSTEM + [rng.randrange(10, 20) for _ in range(rng.randrange(1, 6))], [40 + i % 7] * 3)
        for i in range(40)
    ] + [_example(40 + i, [7, 7, 7] + [i], [50, 51]) for i in range(8)]  # beginnings too short to share
    long = _example(48, SYSTEM + [1] * MAX_DOCUMENT, [52])  # its micro-batch is not shared at all

    def collated(examples: list[TokenizedExample], seed: int) -> float:
        order = list(examples)
        random.Random(seed).shuffle(order)
        computed = sum(
            collate(pack(order[i : i + 8], 10_000), 0, share_prefixes=True)["input_ids"].numel()
            for i in range(0, len(order), 8)
        )
        return 1 - computed / sum(len(e) for e in examples)

    saving = prefix_saving(examples, per_micro_batch=8, seed=3)
    assert saving == pytest.approx(collated(examples, seed=3), abs=0.01)  # rows order by length
    assert 0.3 < saving < 0.7  # the 12-token system prompt, skipped by ~7 of every 8 conversations
    assert prefix_saving(examples[40:], per_micro_batch=8) == 0
    with_long = prefix_saving([*examples, long], per_micro_batch=8, seed=3)
    assert with_long == pytest.approx(collated([*examples, long], seed=3), abs=0.01)
    assert with_long < saving * sum(len(e) for e in examples) / (sum(len(e) for e in examples) + len(long))


def test_a_prefix_never_reaches_a_target():
    """The last shared position predicts each conversation's own next token, so it must be context."""
    examples = [_example(0, SYSTEM, [40, 41]), _example(1, SYSTEM, [40, 42])]
    shared = collate(pack(examples, 64), 0, share_prefixes=True)
    assert shared["branches"].tolist() == [[14, 0, 11]]
    assert _targets(shared) == _targets(collate(pack(examples, 64), 0))


def test_attention_over_a_shared_prefix_equals_each_conversation_whole():
    torch.manual_seed(0)
    prefix, own = 6, [4, 7]
    q, k, v = (torch.randn(1, 2, prefix + sum(own) + 2, 8, dtype=torch.float64) for _ in range(3))
    # the unshared layout: the second conversation with its own copy of the prefix
    full = {
        name: torch.cat([t[:, :, : prefix + own[0]], t[:, :, :prefix], t[:, :, prefix + own[0] :]], 2)
        for name, t in (("q", q), ("k", k), ("v", v))
    }
    full_pos = torch.tensor([list(range(prefix + own[0])) + list(range(prefix + own[1])) + [0, 1]])
    shared_pos = torch.tensor([list(range(prefix + own[0])) + list(range(prefix, prefix + own[1])) + [0, 1]])
    branches = torch.tensor([[prefix + own[0], 0, prefix]])
    for t in (q, k, v, *full.values()):
        t.requires_grad_()
    shared_plan, full_plan = plan_documents(shared_pos, branches), plan_documents(full_pos)
    assert shared_plan.shares_prefixes and not full_plan.shares_prefixes
    out = document_attention(q, k, v, shared_plan.gather, shared_plan.scatter, shared_plan.buckets, 0.3)
    want = document_attention(*full.values(), full_plan.gather, full_plan.scatter, full_plan.buckets, 0.3)
    keep = torch.cat([torch.arange(prefix + own[0]), torch.arange(2 * prefix + own[0], want.shape[1])])
    torch.testing.assert_close(out, want[:, keep], rtol=1e-12, atol=1e-12)
    # gradients: the second copy of the prefix adds into the one the shared layout computed
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    full_grad_out = torch.zeros_like(want)
    full_grad_out[:, keep] = grad_out
    full_grads = torch.autograd.grad(want, tuple(full.values()), full_grad_out)
    for got, whole in zip(grads, full_grads, strict=True):
        second = slice(prefix + own[0], 2 * prefix + own[0])
        folded = whole[:, :, keep].clone()
        folded[:, :, :prefix] += whole[:, :, second]
        torch.testing.assert_close(got, folded, rtol=1e-12, atol=1e-12)


def test_model_loss_and_gradients_with_shared_prefixes_equal_the_rows(
    tiny_model_dir, tiny_tokenizer, tmp_path
):
    rows_batch = packed_batch(tiny_tokenizer, tmp_path, rows=3)
    shared_batch = packed_batch(tiny_tokenizer, tmp_path, rows=3, share_prefixes=True)
    assert shared_batch["branches"].shape[0] > 0
    assert (
        shared_batch["input_ids"].numel()
        < 0.8 * (rows_batch["input_ids"] != tiny_tokenizer.pad_token_id).sum()
    )
    model = document_attention_model(tiny_model_dir)
    assert SupervisedLoss(model).shares_prefixes()
    assert_same_loss_and_gradients(model, model, shared_batch, reference_batch=rows_batch)


def test_a_shared_batch_is_refused_where_attention_cannot_follow_it(tiny_model_dir, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    sdpa = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa"
    )
    assert not SupervisedLoss(sdpa).shares_prefixes()
    batch = packed_batch(tiny_tokenizer, tmp_path, rows=2, share_prefixes=True)
    with pytest.raises(ValueError, match="per-conversation attention"):
        SupervisedLoss(sdpa)(**batch)
