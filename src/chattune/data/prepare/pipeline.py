"""`chattune data prepare`: from raw sources to train.jsonl / val.jsonl, every record accounted for.

    result = run(cfg.data.prepare, tokenizer, max_length=cfg.data.max_length)
    print(result.summary())   # input = kept + dropped, always

Records stream through three passes, a chunk at a time, so memory does not grow with the data:
  1. per record, in forked workers (stages.py): read, validate, repair text, redact PII, apply the
     glossary, drop noise, render with the chat template, sign; spooled to disk in input order
  2. over the whole set (whole_set.py): the scope threshold and the length-outlier limit that only the
     whole set can give, then dedupe in input order, so the member a cluster keeps is one that
     survived every other filter
  3. outputs (outputs.py): the seeded split, train/val, the ledger and the quarantine file
Outputs in cfg.output_dir: train.jsonl, val.jsonl (OpenAI format, no meta: uploadable as is),
ledger.jsonl (one line per input record), quarantine.jsonl (raw rejected records), stats.json,
report.html and plots/*.png.
"""

from __future__ import annotations

import tempfile
import time
from array import array
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chattune.config.prepare import PrepareConfig
from chattune.data import clean
from chattune.data.ingest import RawRecord
from chattune.data.parallel import WorkerPool
from chattune.data.prepare.outputs import Survivors, write_outputs
from chattune.data.prepare.records import Sources, chunks, spool_read, spool_write
from chattune.data.prepare.stages import ChunkResult, Payload, Stages, process_chunk
from chattune.data.prepare.whole_set import judge_length, judge_scope, outlier_limit, preview, scope_scores
from chattune.data.results import PrepareResult, Stats

if TYPE_CHECKING:
    from rich.console import Console
    from transformers import PreTrainedTokenizerBase

CHUNK = 2000  # records per worker task: large enough to amortise pickling, small enough to stream


def run(
    cfg: PrepareConfig,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int,
    epochs: float = 1.0,
    n_params: int | None = None,
    console: Console | None = None,
) -> PrepareResult:
    """Prepare every source in `cfg` and write the outputs; see the module docstring for the passes."""
    from rich.console import Console

    console = console or Console(quiet=True)
    stats, timer, sources = Stats(), _StageTimer(), Sources(cfg)
    stages = Stages.build(cfg, tokenizer)
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=cfg.output_dir, prefix=".spool-") as tmp,
        console.status("reading") as status,
    ):
        spool = Path(tmp)
        with timer("read_clean_tokens"):
            first = first_pass(stages, sources, stats, spool / "1", status)
        with timer("dedupe"):
            status.update("finding duplicates")
            survivors = second_pass(stages, sources, first, stats, spool)
        with timer("write"):
            status.update("writing outputs")
            result = write_outputs(
                cfg,
                sources,
                survivors,
                stats,
                spool / "2",
                max_length=max_length,
                epochs=epochs,
                n_params=n_params,
            )
    if cfg.report:
        from chattune.data.report import write_report

        with timer("report"):
            write_report(cfg.output_dir, result, stats)
    result.stats["seconds"] = timer.seconds
    return result


@dataclass
class FirstPass:
    tokens: Any  # numpy int32: tokens of each record alive after pass 1, in order
    keys: Any  # numpy int64: their keys
    scope: clean.ScopeIndex | None  # their embeddings, when scope.description is set


def first_pass(stages: Stages, sources: Sources, stats: Stats, path: Path, status: Any) -> FirstPass:
    """Every per-record stage, in forked workers, chunk by chunk; the records spooled in input order."""
    cfg = stages.cfg
    scope = clean.ScopeIndex(cfg.scope, path.parent) if cfg.scope.description else None
    in_flight: deque[list[tuple[int, RawRecord]]] = deque()

    def payloads() -> Iterator[list[Payload]]:
        for chunk in chunks(sources.read(), CHUNK):
            in_flight.append(chunk)
            yield [(rec.obj, rec.error, rec.detail, rec.repairs) for _, rec in chunk]

    n = 0
    tokens, keys = array("i"), array("q")
    with WorkerPool(lambda chunk: process_chunk(chunk, stages)) as pool, path.open("wb") as fh:
        for result in pool.imap(payloads()):
            chunk = in_flight.popleft()
            _count(result, stats)
            alive = []
            for (key, rec), row in zip(chunk, result.records, strict=True):
                row.key, row.raw = key, rec.raw
                if row.alive:
                    alive.append(row)
            tokens.extend(r.tokens for r in alive)
            keys.extend(r.key for r in alive)
            if scope is not None:
                scope.add([r.scope_text for r in alive])  # embedded in batches
                for r in alive:
                    r.scope_text = ""  # not needed in the spool
            spool_write(fh, result.records)
            n += len(chunk)
            status.update(f"reading, cleaning, rendering: {n:,} records")
    return FirstPass(np.frombuffer(tokens, dtype=np.int32), np.frombuffer(keys, dtype=np.int64), scope)


def _count(result: ChunkResult, stats: Stats) -> None:
    stats.categories.update(result.categories)
    stats.pii.update(result.pii)
    stats.glossary.update(result.glossary)
    stats.languages.update(result.languages)
    for kind, before, after in result.examples:
        stats.example(kind, before, after)


def second_pass(stages: Stages, sources: Sources, first: FirstPass, stats: Stats, spool: Path) -> Survivors:
    """Scope and length verdicts on the whole set's thresholds, then dedupe in input order."""
    cfg, finder = stages.cfg, stages.finder
    sc = scope_scores(first.scope, first.keys, cfg, stats) if first.scope is not None else None
    limit = outlier_limit(first.tokens, cfg)
    stats.tokens_before = array("i", first.tokens.tolist())
    borderline: list[tuple[str, float, str]] = []
    alive_i = 0
    out = Survivors()
    with (spool / "2").open("wb") as fh:
        for rows in spool_read(spool / "1"):
            for row in (r for r in rows if r.alive):
                if sc is not None:
                    score = float(sc.scores[alive_i])
                    if row.key in stats.scope_borderline_keys:
                        borderline.append((sources.text(row.key), score, preview(row.messages)))
                    judge_scope(row, score, sc, cfg)
                alive_i += 1
                if row.alive and limit is not None:
                    judge_length(row, limit, stages, stats)
            alive = [r for r in rows if r.alive]
            if finder is not None and alive:
                signatures = [(r.digest if cfg.dedupe.exact else None, r.sketch) for r in alive]
                for row, hit in zip(alive, finder.find([r.key for r in alive], signatures), strict=True):
                    if hit is not None:
                        kept, kind = hit
                        row.dup_of = kept
                        row.drop(kind, f"duplicates {sources.text(kept)}")
                        out.cluster_sizes[kept] += 1
                        out.clusters.setdefault(kept, [])
                        if len(out.clusters[kept]) < 5:
                            out.clusters[kept].append(row.key)
            for row in rows:
                row.sketch = None  # not needed any more: keep spool 2 small
                if row.alive:
                    out.alive_per_source[row.key >> 40] += 1
            spool_write(fh, rows)
    stats.scope_borderline = sorted(borderline, key=lambda x: x[1])
    return out


class _StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - t0, 2)
