"""What a long run survives: scheduler signals, non-finite steps, and what it reports about memory.

    with StopOnSignal() as stop:        # SIGTERM / SIGINT: finish the step, checkpoint, exit non-zero
        ...; if stop.signum: ...
    peak_memory()                       # {"peak_rss_gb": ..., "cuda_max_allocated_gb": ...}

Checkpoint write safety (fsync, manifest, fallback to the previous sound checkpoint) lives in checkpoint.py.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from chattune.errors import ChattuneError

HANDLED = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(ChattuneError):
    """The run stopped on a signal after checkpointing; the CLI exits with 128 + the signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class NonFiniteError(ChattuneError):
    """Too many optimizer steps in a row had a non-finite loss or gradient."""


class StopOnSignal:
    """Turns the first SIGTERM/SIGINT into a request the loop honours after the current optimizer step
    (schedulers send SIGTERM and wait a grace period; Ctrl-C sends SIGINT). A second signal means
    "now": the default action runs and the process ends at once, without a checkpoint."""

    def __init__(self) -> None:
        self.signum: int | None = None
        # What signal.signal returned: a Python handler, SIG_DFL/SIG_IGN, or None for one installed outside Python.
        self._previous: dict[int, Callable[[int, FrameType | None], Any] | int | signal.Handlers | None] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name} received: finishing this step and writing a checkpoint "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> StopOnSignal:
        # Handlers can only be installed from the main thread (a sweep may train in another one).
        if threading.current_thread() is threading.main_thread():
            for s in HANDLED:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for s, handler in self._previous.items():
            # A handler installed outside Python cannot be put back (signal.signal refuses None): default it.
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process so far (ru_maxrss, KiB on Linux, bytes on macOS) and, on
    CUDA, the peak memory PyTorch's allocator handed out: the figures to choose a batch size by."""
    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024
    out = {"peak_rss_gb": rss_bytes / 1e9}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]  # torch.cuda.is_initialized has no annotations
        out["cuda_max_allocated_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return out
