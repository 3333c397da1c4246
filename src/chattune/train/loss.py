"""Cross-entropy on assistant tokens only, computing the output projection only where it is scored.

A causal LM's head turns every hidden state into vocabulary logits (49,152 per token for SmolLM2),
and in fp32 that is about half of a training step on CPU. Only assistant tokens are scored, so this
gathers their hidden states first and projects just those, in chunks so the full (targets x vocab)
logits never exist at once. When training, each chunk's gradients are formed in the forward pass
(FusedHeadLoss), so no chunk is projected twice.

The wrapper is an nn.Module so that accelerate can wrap it (DDP/FSDP hooks run on its forward).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from chattune.train.document_attention import NAME as DOCUMENT_ATTENTION
from chattune.train.document_attention import plan_documents

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class SupervisedLoss(nn.Module):
    # 512 targets x 49,152 vocab: ~100 MB of fp32 logits at a time. Whole-batch logits (4 x 512 packed
    # rows, ~1,400 targets) held ~0.5 GB more at the peak.
    def __init__(self, model: nn.Module, chunk_size: int = 512):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size

    def causal_lm(self) -> PreTrainedModel:
        """The transformers model under a peft wrapper, or the model itself."""
        get_base_model = getattr(self.model, "get_base_model", None)
        return cast("PreTrainedModel", get_base_model() if get_base_model is not None else self.model)

    def forward(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, select: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (summed loss, number of correct argmax predictions) over the selected targets."""
        lm = self.causal_lm()
        backbone = getattr(lm, lm.base_model_prefix)
        # No attention mask on purpose: with position-id resets, transformers builds the packed
        # (block-diagonal) causal mask itself, or per-document attention follows the same boundaries.
        by_document = getattr(lm.config, "_attn_implementation", None) == DOCUMENT_ATTENTION
        plan = plan_documents(position_ids) if by_document else None
        extra = {"document_plan": plan} if plan is not None else {}
        hidden = backbone(
            input_ids=input_ids, position_ids=position_ids, use_cache=False, **extra
        ).last_hidden_state
        hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1]).index_select(0, select)
        head = cast(nn.Module, lm.get_output_embeddings())
        softcap = getattr(lm.config, "final_logit_softcapping", None)
        needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or head.weight.requires_grad)
        if needs_grad and not softcap and getattr(head, "bias", None) is None:
            fused = FusedHeadLoss.apply(hidden, head.weight, targets, self.chunk_size)  # type: ignore[no-untyped-call]  # torch.autograd.Function.apply has no annotations
            return cast(tuple[torch.Tensor, torch.Tensor], fused)
        loss = hidden.new_zeros((), dtype=torch.float32)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        for start in range(0, hidden.shape[0], self.chunk_size):
            h, t = hidden[start : start + self.chunk_size], targets[start : start + self.chunk_size]
            if needs_grad:  # soft-capped or biased heads: recompute each chunk's logits in backward
                chunk_loss, chunk_correct = checkpoint(_head_loss, h, t, head, softcap, use_reentrant=False)
            else:
                chunk_loss, chunk_correct = _head_loss(h, t, head, softcap)
            loss = loss + chunk_loss
            correct = correct + chunk_correct
        return loss, correct


def _head_loss(
    hidden: torch.Tensor, targets: torch.Tensor, head: nn.Module, softcap: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head(hidden).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, reduction="sum"), (logits.argmax(-1) == targets).sum()


class _Context(Protocol):
    """The `ctx` torch passes FusedHeadLoss (torch's FunctionCtx stub declares neither saved_tensors nor
    needs_input_grad, and its save_for_backward does not take the None that torch accepts)."""

    saved_tensors: tuple[torch.Tensor | None, torch.Tensor | None]  # grad_hidden, grad_weight
    needs_input_grad: tuple[bool, ...]

    def save_for_backward(
        self, grad_hidden: torch.Tensor | None, grad_weight: torch.Tensor | None, /
    ) -> None: ...

    def mark_non_differentiable(self, *tensors: torch.Tensor) -> None: ...


class FusedHeadLoss(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T` against `targets`, with both gradients computed in the
    forward pass, chunk by chunk, while each chunk's logits are at hand.

    The checkpointed path above projects every chunk twice (forward, then again in backward) and runs
    softmax twice; here the gradient of the summed loss w.r.t. the logits, softmax(logits) - onehot,
    is formed in place of the logits and immediately multiplied out into the hidden-state and weight
    gradients, which backward then only scales. One head projection and one softmax fewer per step, and
    still only one chunk of logits alive. The matmuls run in the autocast dtype (as `nn.Linear` would
    under autocast), softmax and the loss in fp32.
    """

    @staticmethod
    def forward(
        ctx: _Context,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        chunk_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        with torch.autocast(device, enabled=False):
            w = weight.to(dtype)
            grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
            grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            correct = torch.zeros((), dtype=torch.long, device=hidden.device)
            for start in range(0, hidden.shape[0], chunk_size):
                h = hidden[start : start + chunk_size].to(dtype)
                t = targets[start : start + chunk_size]
                logits = (h @ w.T).float()
                rows = torch.arange(len(t), device=t.device)
                target_logit = logits[rows, t]
                top, best = logits.max(dim=-1, keepdim=True)
                correct += (best.squeeze(1) == t).sum()
                # softmax - onehot in place of the logits, in as few passes over them as possible:
                # exp(logit - max), its sum, then (exp - sum * onehot) / sum written in the matmul dtype
                exps = logits.sub_(top).exp_()
                total = exps.sum(dim=-1, keepdim=True)
                loss += (top + total.log() - target_logit[:, None]).sum()
                exps[rows, t] -= total.squeeze(1)
                grad_logits = exps.mul_(total.reciprocal()).to(dtype)
                if grad_hidden is not None:
                    grad_hidden[start : start + chunk_size] = grad_logits @ w
                if grad_weight is not None:
                    grad_weight += (grad_logits.T @ h).to(grad_weight.dtype)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(
        ctx: _Context, grad_loss: torch.Tensor, _grad_correct: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        grad_hidden, grad_weight = ctx.saved_tensors
        return (
            grad_hidden * grad_loss if grad_hidden is not None else None,
            grad_weight * grad_loss if grad_weight is not None else None,
            None,
            None,
        )
