"""Validation loss, perplexity and token accuracy on assistant tokens, the same math as training.

metrics = validation_metrics(model, examples, batch_size=4, max_length=1024)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from chattune.data.tokenize import TokenizedExample
from chattune.train.batching import Row, collate, pack
from chattune.train.loss import SupervisedLoss


def loss_sums(
    loss_module: nn.Module,
    batches: Iterable[list[Row]],
    *,
    pad_id: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[object]] = nullcontext,
    share_prefixes: bool = False,
) -> torch.Tensor:
    """[summed loss, correct predictions, targets] over the batches, as one float64 tensor on `device`."""
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    was_training = loss_module.training
    loss_module.eval()
    with torch.no_grad():
        for rows in batches:
            batch = {k: v.to(device) for k, v in collate(rows, pad_id, share_prefixes=share_prefixes).items()}
            with autocast():
                loss, correct = loss_module(**batch)
            totals += torch.stack(
                [
                    loss.double(),
                    correct.double(),
                    torch.tensor(float(len(batch["targets"])), device=device, dtype=torch.float64),
                ]
            )
    loss_module.train(was_training)
    return totals


def metrics_from_sums(totals: torch.Tensor) -> dict[str, float]:
    loss_sum, correct, n = (float(x) for x in totals.tolist())
    loss = loss_sum / max(n, 1.0)
    return {
        "val_loss": loss,
        "val_perplexity": math.exp(min(loss, 50.0)),
        "val_token_accuracy": correct / max(n, 1.0),
        "val_tokens": n,
    }


def validation_metrics(
    model: nn.Module,
    examples: list[TokenizedExample],
    *,
    batch_size: int,
    max_length: int,
    packing: bool = True,
    max_batches: int | None = None,
    pad_id: int = 0,
) -> dict[str, float]:
    """Loss, perplexity and token accuracy of `model` on assistant tokens of tokenised examples."""
    rows = pack(examples, max_length, packing=packing)
    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)][:max_batches]
    device = next(model.parameters()).device
    loss = SupervisedLoss(model)
    return metrics_from_sums(
        loss_sums(loss, batches, pad_id=pad_id, device=device, share_prefixes=loss.shares_prefixes())
    )
