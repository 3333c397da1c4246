"""Cross-entropy on assistant tokens only, computing the output projection only where it is scored.

A causal LM's head turns every hidden state into vocabulary logits (49,152 per token for SmolLM2),
and in fp32 that is about half of a training step on CPU. Only assistant tokens are scored, so for
architectures whose head chattune knows (`cpu_kernels.head_is_plain`), this gathers their hidden
states first and projects just those, in chunks so the full (targets x vocab) logits never exist at
once; when training, each chunk's gradients are formed in the forward pass (cpu_kernels/head.py), so
no chunk is projected twice. Any other model (one that scales or transforms its logits in its own
forward, or with train.cpu_kernels=off) is scored on the logits its own forward returns.

The wrapper is an nn.Module so that accelerate can wrap it (DDP/FSDP hooks run on its forward).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from chattune.train.cpu_kernels.attention import NAME as DOCUMENT_ATTENTION
from chattune.train.cpu_kernels.attention import plan_documents
from chattune.train.cpu_kernels.head import FusedHeadLoss

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class SupervisedLoss(nn.Module):
    # 512 targets x 49,152 vocab: ~100 MB of fp32 logits at a time. Whole-batch logits (4 x 512 packed
    # rows, ~1,400 targets) held ~0.5 GB more at the peak.
    def __init__(self, model: nn.Module, chunk_size: int = 512, *, own_head: bool = True):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        self.own_head = own_head  # chattune projects the scored tokens itself (a tested, plain head)

    def causal_lm(self) -> PreTrainedModel:
        """The transformers model under a peft wrapper, or the model itself."""
        get_base_model = getattr(self.model, "get_base_model", None)
        return cast("PreTrainedModel", get_base_model() if get_base_model is not None else self.model)

    def shares_prefixes(self) -> bool:
        """Whether batches may be collated with shared prefixes (batching.py): only per-conversation
        attention can follow them."""
        lm = self.causal_lm()
        return self.own_head and getattr(lm.config, "_attn_implementation", None) == DOCUMENT_ATTENTION

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        select: torch.Tensor,
        targets: torch.Tensor,
        branches: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (summed loss, number of correct argmax predictions) over the selected targets."""
        lm = self.causal_lm()
        if branches is not None and branches.numel() and not self.shares_prefixes():
            raise ValueError("a batch collated with shared prefixes needs per-conversation attention")
        if not self.own_head:
            return self._through_model_head(lm, input_ids, position_ids, select, targets)
        backbone = getattr(lm, lm.base_model_prefix)
        # No attention mask on purpose: with position-id resets, transformers builds the packed
        # (block-diagonal) causal mask itself, or per-document attention follows the same boundaries.
        by_document = getattr(lm.config, "_attn_implementation", None) == DOCUMENT_ATTENTION
        plan = plan_documents(position_ids, branches) if by_document else None
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

    def _through_model_head(
        self,
        lm: nn.Module,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        select: torch.Tensor,
        targets: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's own forward, logits and all: whatever it does to its logits is trained on."""
        logits = lm(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits
        logits = logits[:, :-1].reshape(-1, logits.shape[-1]).index_select(0, select).float()
        return F.cross_entropy(logits, targets, reduction="sum"), (logits.argmax(-1) == targets).sum()


def _head_loss(
    hidden: torch.Tensor, targets: torch.Tensor, head: nn.Module, softcap: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head(hidden).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, reduction="sum"), (logits.argmax(-1) == targets).sum()
