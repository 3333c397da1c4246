"""Training: `run(cfg) -> RunResult` fine-tunes a model on assistant tokens (see loop.py)."""

import os

# oneDNN (PyTorch's CPU matmul library) caches a compiled primitive per tensor shape, 1,024 by default.
# Packed batches score a different number of tokens every step, so the cache filled with one-off shapes
# and resident memory grew all run: peak RSS 3.76 -> 4.39 GB over 60 steps of the benchmark's 400
# conversations, 10 GB by the end of a 10,000-conversation run. 64 entries: 3.72 -> 3.99 GB, flat after
# step 40, at the same speed (README, "Performance"). Set before torch makes its first primitive; a value
# the user exported wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

from chattune.train.loop import RunResult, run  # noqa: E402  # after the cache capacity above

__all__ = ["RunResult", "run"]
