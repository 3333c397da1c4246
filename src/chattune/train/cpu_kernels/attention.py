"""Causal attention within each packed conversation, for CPU training.

A packed row holds several conversations kept apart by position-id resets; transformers turns that
into a block-diagonal causal mask and SDPA computes the full (row x row) scores under it. On CPU,
PyTorch's flash kernel gains nothing from the mask (it only skips work for `is_causal`), and its bf16
backward runs at ~15% of the machine's bf16 matmul peak: ~60 ms per SmolLM2 layer for 4 x 512 tokens,
a quarter of a training step.

Here each conversation attends only to itself. Conversations of similar length are gathered into
buckets (one padded length each, chosen by a small dynamic programme that trades padding against the
number of calls), and each bucket is computed with batched bf16 matmuls, which run near the matmul
peak even at these shapes, plus one softmax pass. The probabilities are recomputed in backward
instead of kept: backward keeps q, k and v only (the flash kernel also keeps output and logsumexp).
The arithmetic is that of transformers' eager attention under autocast: bf16 scores, softmax
computed in fp32 and rounded to bf16, bf16 products. On SmolLM2-135M (4 x 512 packed rows, 2 cores,
compiled full fine-tuning) a layer's attention forward and backward fell from ~60 to ~40 ms and the
step from 6.7 to 6.0 s; see the README.

The op is a `torch.library` custom op, so torch.compile treats it as one opaque node (the bucket
layout varies from batch to batch and must not be traced). It is used only when the training loss
passes a `DocumentPlan` (`SupervisedLoss` does, on CPU, unless a conversation is longer than 1,024
tokens: a whole score matrix per conversation would then cost more memory than the flash kernel's
blockwise pass); every other call (generation, evaluation suites, other devices) runs SDPA with
transformers' own mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from torch import Tensor

from chattune.errors import ChattuneError

NAME = "chattune_documents"
# Padding traded against calls: a bucket costs its padded (length^2) area plus this many score
# entries. Measured on SmolLM2 LoRA steps (4 x 512): 16K 246, 32K-128K 262-265, 1M (one bucket)
# 211 supervised tok/s; a few large buckets beat many tight ones.
_BUCKET_OVERHEAD = 256 * 256
_SCORES_PER_PIECE = 1 << 22  # 8 MB of bf16 scores
MAX_DOCUMENT = 1024  # one such document's scores: 9 heads x 1024^2 = 19 MB in bf16


@dataclass(frozen=True)
class DocumentPlan:
    """Where each token of a packed (batch x length) block goes in the bucketed layout."""

    gather: (
        Tensor  # [slots]: flat token index filling each bucket slot (padding repeats a document's last token)
    )
    scatter: Tensor  # [batch * length]: the slot holding each token's output
    buckets: Tensor  # [n, 2]: (documents, padded length) per bucket, in slot order
    shares_prefixes: bool = False  # some documents attend to a prefix laid out in another: SDPA cannot


def plan_documents(position_ids: Tensor, branches: Tensor | None = None) -> DocumentPlan | None:
    """Buckets of documents, a document being a run of consecutive positions (the rule transformers
    uses to build the packed mask: a new one starts wherever a position is not the previous + 1).
    None when a document is longer than MAX_DOCUMENT: its (length x length) scores would cost more
    memory than the flash kernel's blockwise pass, so SDPA keeps that batch.

    `branches` ([n, 3]: own start, prefix start, prefix length; batching.collate with shared prefixes)
    marks documents whose first tokens are another document's: their slot holds that prefix, gathered
    again, then their own tokens. Their outputs at the prefix are not used (the prefix's own slot gives
    them), and backward adds their key/value gradients at the prefix into the prefix's tokens."""
    import numpy as np

    batch, length = position_ids.shape
    pos = position_ids.detach().cpu()
    starts_mask = torch.ones_like(pos, dtype=torch.bool)
    starts_mask[:, 1:] = pos[:, 1:] != pos[:, :-1] + 1
    prefix_of: dict[int, tuple[int, int]] = {}
    if branches is not None and branches.numel():
        for own, source, shared in branches.tolist():
            prefix_of[own] = (source, shared)
        starts_mask.view(-1)[branches[:, 0].cpu()] = True
    starts = starts_mask.reshape(-1).nonzero().squeeze(1).tolist() + [batch * length]
    # rows end where the next begins, so a document never spans two rows
    docs = sorted(
        (
            (end - start + prefix_of.get(start, (0, 0))[1], start)
            for start, end in zip(starts, starts[1:], strict=False)
        ),
        reverse=True,
    )
    if docs[0][0] > MAX_DOCUMENT:
        if prefix_of:
            raise ValueError(f"a document of {docs[0][0]} tokens shares a prefix: batching must not share it")
        return None

    # Split the longest-first list into contiguous buckets [i, j) minimising padded area (every
    # document padded to the first, longest one) plus a fixed overhead per bucket.
    n = len(docs)
    area = np.array([size * size for size, _ in docs], dtype=np.float64)
    cost = np.zeros(n + 1)
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        candidates = cost[:j] + (j - np.arange(j)) * area[:j] + _BUCKET_OVERHEAD
        cut[j] = int(candidates.argmin())
        cost[j] = candidates[cut[j]]
    bounds, j = [], n
    while j > 0:
        bounds.append((cut[j], j))
        j = cut[j]
    bounds.reverse()

    gather: list[int] = []
    scatter = torch.empty(batch * length, dtype=torch.long)
    buckets = []
    for i, j in bounds:
        padded = docs[i][0]
        for size, start in docs[i:j]:
            source, shared = prefix_of.get(start, (0, 0))
            gather += range(source, source + shared)
            own = size - shared
            scatter[start : start + own] = torch.arange(len(gather), len(gather) + own)
            gather += range(start, start + own)
            gather += [start + own - 1] * (padded - size)
        buckets.append((j - i, padded))
    device = position_ids.device
    return DocumentPlan(
        torch.tensor(gather, dtype=torch.long, device=device),
        scatter.to(device),
        torch.tensor(buckets, dtype=torch.long),
        shares_prefixes=bool(prefix_of),
    )


_causal_biases: dict[tuple[torch.dtype, torch.device], Tensor] = {}


def _causal_bias(length: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[length, length]: -inf where a key comes after its query, else 0. Added, not masked_fill'ed
    (~4x faster on CPU). One cached table per dtype and device, as large as the longest bucket so
    far, sliced for each: a table per length would add up to ~0.3 GB over a run at 512 tokens."""
    table = _causal_biases.get((dtype, device))
    if table is None or table.shape[0] < length:
        after = torch.ones(length, length, dtype=torch.bool, device=device).triu_(1)
        table = torch.zeros(length, length, dtype=dtype, device=device).masked_fill_(after, float("-inf"))
        _causal_biases[(dtype, device)] = table
    return table[:length, :length]


def _probs(q: Tensor, k: Tensor) -> Tensor:
    """q [m, kv_heads, groups * P, D] (pre-scaled), k [m, kv_heads, P, D] -> causal softmax [.., groups * P, P]."""
    m, kv_heads, length = k.shape[:3]
    scores = torch.matmul(q, k.transpose(-1, -2))
    scores.view(m, kv_heads, -1, length, length).add_(_causal_bias(length, scores.dtype, q.device))
    return torch.softmax(scores, -1)


def _pieces(buckets: Tensor, heads: int) -> list[tuple[int, int]]:
    """The buckets as consecutive pieces of at most _SCORES_PER_PIECE scores each: the (documents x
    heads x P x P) scores of a whole bucket of long conversations would add tens of MB at the peak."""
    pieces = []
    for m, padded in buckets.tolist():
        step = max(1, _SCORES_PER_PIECE // (heads * padded * padded))
        pieces += [(min(step, m - start), padded) for start in range(0, m, step)]
    return pieces


def _bucket_views(flat: Tensor, buckets: list[tuple[int, int]]) -> list[Tensor]:
    """Split [slots, heads, D] into per-bucket [m, P, heads, D] views."""
    views, offset = [], 0
    for m, padded in buckets:
        views.append(flat[offset : offset + m * padded].view(m, padded, *flat.shape[1:]))
        offset += m * padded
    return views


def _grouped(x: Tensor, kv_heads: int) -> Tensor:
    """[m, P, heads, D] -> [m, kv_heads, groups * P, D]: the query heads sharing a key/value head stacked."""
    m, padded, heads, dim = x.shape
    return (
        x.view(m, padded, kv_heads, heads // kv_heads, dim)
        .permute(0, 2, 3, 1, 4)
        .reshape(m, kv_heads, -1, dim)
    )


def _ungrouped(x: Tensor, padded: int) -> Tensor:
    """Inverse of _grouped: [m, kv_heads, groups * P, D] -> [m, P, heads, D]."""
    m, kv_heads, _, dim = x.shape
    return x.view(m, kv_heads, -1, padded, dim).permute(0, 3, 1, 2, 4).reshape(m, padded, -1, dim)


def _gathered(x: Tensor, gather: Tensor) -> Tensor:
    """[B, heads, L, D] -> [slots, heads, D] in bucket order."""
    batch, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(batch * length, heads, dim).index_select(0, gather)


def _slots(
    query: Tensor, key: Tensor, value: Tensor, gather: Tensor, buckets: Tensor, scale: float
) -> tuple[list[tuple[int, int]], Tensor, Tensor, Tensor]:
    """The pieces to compute and q (pre-scaled), k, v in slot order: what forward and backward share."""
    return (
        _pieces(buckets, query.shape[1]),
        _gathered(query, gather).mul_(scale),
        _gathered(key, gather),
        _gathered(value, gather),
    )


@torch.library.custom_op("chattune::document_attention", mutates_args=())
def document_attention(
    query: Tensor, key: Tensor, value: Tensor, gather: Tensor, scatter: Tensor, buckets: Tensor, scale: float
) -> Tensor:
    """query [B, H, L, D], key/value [B, KV, L, D] -> [B, L, H, D], causal within each document."""
    with torch.autocast(query.device.type, enabled=False):  # forward and backward in the inputs' dtype
        return _forward(query, key, value, gather, scatter, buckets, scale)


def _forward(
    query: Tensor, key: Tensor, value: Tensor, gather: Tensor, scatter: Tensor, buckets: Tensor, scale: float
) -> Tensor:
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    layout, q, k, v = _slots(query, key, value, gather, buckets, scale)
    out = torch.empty_like(q)
    for (_, padded), qb, kb, vb, ob in zip(
        layout, *(_bucket_views(t, layout) for t in (q, k, v, out)), strict=True
    ):
        probs = _probs(_grouped(qb, kv_heads), kb.transpose(1, 2))
        ob.copy_(_ungrouped(torch.matmul(probs, vb.transpose(1, 2)), padded))
    return out.index_select(0, scatter).view(batch, length, heads, dim)


@document_attention.register_fake
def _(
    query: Tensor, key: Tensor, value: Tensor, gather: Tensor, scatter: Tensor, buckets: Tensor, scale: float
) -> Tensor:
    batch, heads, length, dim = query.shape
    return query.new_empty(batch, length, heads, dim)


@torch.library.custom_op("chattune::document_attention_backward", mutates_args=())
def document_attention_backward(
    grad_out: Tensor,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    gather: Tensor,
    scatter: Tensor,
    buckets: Tensor,
    scale: float,
) -> tuple[Tensor, Tensor, Tensor]:
    with torch.autocast(query.device.type, enabled=False):
        return _backward_impl(grad_out, query, key, value, gather, scatter, buckets, scale)


def _backward_impl(
    grad_out: Tensor,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    gather: Tensor,
    scatter: Tensor,
    buckets: Tensor,
    scale: float,
) -> tuple[Tensor, Tensor, Tensor]:
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    layout, q, k, v = _slots(query, key, value, gather, buckets, scale)
    # each token has exactly one slot; padding slots get no gradient
    grad_slots = grad_out.new_zeros(q.shape).index_copy_(
        0, scatter, grad_out.reshape(batch * length, heads, dim)
    )
    grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    for (_, padded), qb, kb, vb, gb, dqb, dkb, dvb in zip(
        layout,
        *(_bucket_views(t, layout) for t in (q, k, v, grad_slots, grad_q, grad_k, grad_v)),
        strict=True,
    ):
        qg, go, kt, vt = (
            _grouped(qb, kv_heads),
            _grouped(gb, kv_heads),
            kb.transpose(1, 2),
            vb.transpose(1, 2),
        )
        probs = _probs(qg, kt)  # recomputed: cheaper in memory than keeping them from forward
        dvb.copy_(torch.matmul(probs.transpose(-1, -2), go).transpose(1, 2))
        grad_scores = torch._softmax_backward_data(
            torch.matmul(go, vt.transpose(-1, -2)), probs, -1, probs.dtype
        )
        del probs
        dqb.copy_(_ungrouped(torch.matmul(grad_scores, kt).mul_(scale), padded))
        dkb.copy_(torch.matmul(grad_scores.transpose(-1, -2), qg).transpose(1, 2))

    def unbucket(slots: Tensor, like: Tensor) -> Tensor:
        flat = slots.new_zeros(batch * length, *slots.shape[1:]).index_add_(0, gather, slots)
        return flat.view(batch, length, like.shape[1], dim).transpose(1, 2)

    return unbucket(grad_q, query), unbucket(grad_k, key), unbucket(grad_v, value)


@document_attention_backward.register_fake
def _(
    grad_out: Tensor,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    gather: Tensor,
    scatter: Tensor,
    buckets: Tensor,
    scale: float,
) -> tuple[Tensor, Tensor, Tensor]:
    def like(x: Tensor) -> Tensor:
        b, h, n, d = x.shape
        return x.new_empty(b, n, h, d).transpose(1, 2)

    return like(query), like(key), like(value)


class _Context(Protocol):
    """The `ctx` torch passes document_attention's autograd functions (torch's FunctionCtx stub does not
    declare saved_tensors)."""

    saved_tensors: tuple[
        Tensor, Tensor, Tensor, Tensor, Tensor, Tensor
    ]  # query, key, value, gather, scatter, buckets
    scale: float

    def save_for_backward(self, *tensors: Tensor) -> None: ...


def _setup_context(
    ctx: _Context, inputs: tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, float], output: Tensor
) -> None:
    query, key, value, gather, scatter, buckets, scale = inputs
    ctx.save_for_backward(query, key, value, gather, scatter, buckets)
    ctx.scale = scale


def _backward(ctx: _Context, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None, None, None]:
    query, key, value, gather, scatter, buckets = ctx.saved_tensors
    grad_q, grad_k, grad_v = document_attention_backward(
        grad_out.to(query.dtype).contiguous(), query, key, value, gather, scatter, buckets, ctx.scale
    )
    return grad_q, grad_k, grad_v, None, None, None, None


document_attention.register_autograd(_backward, setup_context=_setup_context)


# Arguments transformers passes to attention functions that this kernel understands: bookkeeping it
# may ignore, and features that send a call to SDPA when set (sliding window, soft-capping, sinks).
KNOWN_ARGUMENTS = frozenset(
    {"position_ids", "use_cache", "cache_position", "output_attentions", "sliding_window", "softcap", "s_aux"}
)


def attention_forward(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    document_plan: DocumentPlan | None = None,
    **kwargs: Any,  # whatever transformers passes its attention functions; forwarded to SDPA's
) -> tuple[Tensor, None]:
    """transformers attention interface: per-document attention when given a plan, else SDPA.
    With a plan, every other argument must be one this kernel knows: an attention feature added to
    transformers later (a new bias, a new kind of window) stops training with a message rather than
    passing through with the wrong math."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    unknown = sorted(set(kwargs) - KNOWN_ARGUMENTS) if document_plan is not None else []
    if unknown:
        raise ChattuneError(
            f"per-conversation attention got argument(s) it does not know: {', '.join(unknown)} "
            f"({type(module).__name__}); set train.cpu_kernels=off to train with transformers' own attention"
        )

    usable = (
        document_plan is not None
        and dropout == 0.0
        and query.shape[2] == key.shape[2]  # no KV cache
        and query.shape[0] * query.shape[2] == document_plan.scatter.numel()
        and all(
            kwargs.get(name) is None for name in ("sliding_window", "softcap", "s_aux")
        )  # plain softmax attention
        and getattr(module, "is_causal", True)
    )
    if document_plan is not None and document_plan.shares_prefixes and not usable:
        raise ChattuneError(
            f"a batch with shared prefixes reached attention that cannot follow them ({type(module).__name__}); "
            "set train.share_prefixes=false"
        )
    if document_plan is None or not usable:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    device = query.device.type
    if torch.is_autocast_enabled(device):  # as autocast casts SDPA's inputs (rotary made q and k fp32)
        dtype = torch.get_autocast_dtype(device)
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    out = document_attention(
        query, key, value, document_plan.gather, document_plan.scatter, document_plan.buckets, scale
    )
    return out, None


def use_document_attention(model: torch.nn.Module) -> bool:
    """Route the model's SDPA attention through `attention_forward` (registered once under NAME, with
    SDPA's mask builder); True if the model now uses it. Models on other attention backends, or that do
    not take the attention interface, are left as they are."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in ("sdpa", NAME):
        return False
    AttentionInterface.register(NAME, attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    cast(_SetsAttention, model).set_attn_implementation(NAME)
    return bool(config._attn_implementation == NAME)


class _SetsAttention(Protocol):
    """transformers' PreTrainedModel (and a peft model, which forwards the call to it)."""

    def set_attn_implementation(self, attn_implementation: str) -> None: ...
