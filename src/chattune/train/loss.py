"""Cross-entropy on assistant tokens only, computing the output projection only where it is scored.

A causal LM's head turns every hidden state into vocabulary logits (49,152 per token for SmolLM2),
and in fp32 that is about half of a training step on CPU. Only assistant tokens are scored, so this
gathers their hidden states first and projects just those, in chunks so the full (targets x vocab)
logits never exist at once.

The wrapper is an nn.Module so that accelerate can wrap it (DDP/FSDP hooks run on its forward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class SupervisedLoss(nn.Module):
    # 512 targets x 49,152 vocab: ~250 MB of logits and their gradient at a time. Whole-batch logits
    # (4 x 512 packed rows, ~1,400 targets) held ~0.5 GB more at the peak; recomputing each chunk's
    # logits in backward costs one more head matmul, ~5% of a step.
    def __init__(self, model: nn.Module, chunk_size: int = 512):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size

    def causal_lm(self) -> nn.Module:
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def forward(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, select: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (summed loss, number of correct argmax predictions) over the selected targets."""
        lm = self.causal_lm()
        backbone = getattr(lm, lm.base_model_prefix)
        # No attention mask on purpose: with position-id resets, transformers builds the packed
        # (block-diagonal) causal mask itself.
        hidden = backbone(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state
        hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1]).index_select(0, select)
        head = lm.get_output_embeddings()
        softcap = getattr(lm.config, "final_logit_softcapping", None)
        loss = hidden.new_zeros((), dtype=torch.float32)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        for start in range(0, hidden.shape[0], self.chunk_size):
            h, t = hidden[start : start + self.chunk_size], targets[start : start + self.chunk_size]
            if torch.is_grad_enabled():
                # Recompute each chunk's logits in backward instead of keeping them all.
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
