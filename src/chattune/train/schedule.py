"""Learning-rate schedules as tiny pure functions of the step: nothing to save, nothing to restore.

`lr_at(step)` is the rate for optimizer step `step` (0-based). Warm-up is linear from 0; after it,
linear and cosine decay to `min_lr_ratio * peak` at the last step, `step` multiplies by `gamma` every
`step_size` steps, and `constant` stays at the peak.
"""

from __future__ import annotations

import math

from chattune.config import TrainConfig


def warmup_steps(cfg: TrainConfig, total_steps: int) -> int:
    if cfg.warmup_steps is not None:
        return min(cfg.warmup_steps, total_steps)
    return round((cfg.warmup_ratio or 0.0) * total_steps)


def lr_at(step: int, cfg: TrainConfig, total_steps: int) -> float:
    peak, warmup = cfg.learning_rate, warmup_steps(cfg, total_steps)
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    if cfg.scheduler == "constant":
        return peak
    if cfg.scheduler == "step":
        return peak * cfg.gamma ** ((step - warmup) // cfg.step_size)
    progress = (step - warmup) / max(1, total_steps - 1 - warmup)
    floor = cfg.min_lr_ratio * peak
    if cfg.scheduler == "linear":
        return floor + (peak - floor) * (1.0 - progress)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
