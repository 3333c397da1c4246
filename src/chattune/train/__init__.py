"""Training: `run(cfg) -> RunResult` fine-tunes a model on assistant tokens (see loop.py)."""

from chattune.train.loop import RunResult, run

__all__ = ["RunResult", "run"]
