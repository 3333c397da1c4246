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
from collections import deque
from collections.abc import Callable, Iterator, Sequence
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


class WorkerPool:
    """Forked workers that live for a whole run and take chunks from an iterator, a few at a time.

        with WorkerPool(process_chunk) as pool:
            for results in pool.imap(chunks):     # in input order
                ...

    The function (and whatever it closes over: config, tokenizer) is inherited at fork, before the run
    builds anything large, so the workers stay small; chunks go out and results come back pickled.
    `multiprocessing.Pool.imap` would read the whole input iterator ahead on its own thread, so a
    streamed run would hold every record at once; here at most `2 x workers` chunks are in flight.
    With one core or no fork it runs in this process.
    """

    def __init__(self, fn: Callable[[Any], Any]):
        self.fn = fn
        self.workers = min(os.cpu_count() or 1, MAX_WORKERS)
        self.pool: Any = None

    def __enter__(self) -> WorkerPool:
        global _TASK
        if self.workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            _TASK = (self.fn, (), 0)
            try:
                self.pool = multiprocessing.get_context("fork").Pool(self.workers)
            finally:
                _TASK = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.terminate() if exc[0] is not None else self.pool.close()
            self.pool.join()

    def imap(self, chunks: Iterator[Any]) -> Iterator[Any]:
        if self.pool is None:
            yield from map(self.fn, chunks)
            return
        pending: deque[Any] = deque()
        for chunk in chunks:
            pending.append(self.pool.apply_async(_call_fn, (chunk,)))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


_WORKER_FN: Callable[[Any], Any] | None = None


def _call_fn(chunk: Any) -> Any:
    # In a worker forked by WorkerPool, _TASK was set at fork time; keep it for every later call.
    global _WORKER_FN
    if _WORKER_FN is None:
        assert _TASK is not None, "WorkerPool's function runs only in its workers"
        _WORKER_FN = _TASK[0]
    return _WORKER_FN(chunk)
