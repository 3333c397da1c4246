"""The output head and cross-entropy of the scored tokens in one pass, chunk by chunk (see FusedHeadLoss).

Used by `chattune.train.loss.SupervisedLoss` for architectures in `cpu_kernels.TESTED` whose head is a
plain bias-free projection with no logit scaling, soft-capping or other transform in the model's own
forward; every other model is scored on the logits its own forward returns.
"""

from __future__ import annotations

from typing import Protocol

import torch


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
