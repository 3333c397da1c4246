"""Map a function over many records in forked worker processes.

    results = parallel_map(lambda messages: clean_one(messages, cfg), all_messages)

Data preparation is pure Python per record (regexes, Jinja rendering, language identification,
MinHash), so threads would share one GIL. Forked workers inherit the function, its closure and the
inputs (tokenizers and compiled regexes included) without pickling them; only chunk offsets go out and
only the results come back. Where fork is unavailable (Windows, macOS spawn default) or the input is
small, it runs in this process: same results, no start-up cost.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

CHUNK = 1000
MAX_WORKERS = 8

# (function, inputs, chunk) for the forked workers; set only while a pool is running.
_TASK: tuple[Callable[[Any], Any], Sequence[Any], int] | None = None


def parallel_map(fn: Callable[[T], R], inputs: Sequence[T], *, chunk: int | None = None) -> list[R]:
    """[fn(x) for x in inputs], spread over up to one forked worker per CPU core, in input order."""
    chunk = chunk or CHUNK
    n_chunks = -(-len(inputs) // chunk)
    workers = min(n_chunks, os.cpu_count() or 1, MAX_WORKERS)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(x) for x in inputs]
    global _TASK
    _TASK = (fn, inputs, chunk)
    # Frozen objects are skipped by the workers' garbage collector, which would otherwise visit (and so
    # copy, page by page) every object inherited from this process.
    gc.freeze()
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return [r for part in pool.imap(_run_chunk, range(0, len(inputs), chunk)) for r in part]
    finally:
        gc.unfreeze()
        _TASK = None


def parallel_map_batches(
    fn: Callable[[Sequence[T]], list[R]], inputs: Sequence[T], *, chunk: int | None = None
) -> list[R]:
    """Like parallel_map, for a function that takes a whole chunk at once (to batch work such as
    tokenisation inside it); fn must return one result per input, in order."""
    chunk = chunk or CHUNK
    starts = range(0, len(inputs), chunk)
    return [r for part in parallel_map(lambda s: fn(inputs[s : s + chunk]), starts, chunk=1) for r in part]


def _run_chunk(start: int) -> list[Any]:
    assert _TASK is not None, "parallel_map's workers run only inside parallel_map"
    fn, inputs, chunk = _TASK
    return [fn(x) for x in inputs[start : start + chunk]]
