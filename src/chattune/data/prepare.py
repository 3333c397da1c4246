"""`chattune data prepare`: from raw sources to train.jsonl / val.jsonl, with every record accounted for.

    result = run(cfg.data.prepare, tokenizer, max_length=cfg.data.max_length)
    print(result.summary())   # input = kept + dropped, always

The stages, in order (each one only sees what the previous kept):
  1. ingest + validate   every source, streamed; the cookbook's categories counted, fatal ones dropped
  2. text                ftfy, HTML -> text, invisible characters; PII redaction; glossary terms
  3. noise               empty turns, too short / junk, repetitive; language; out-of-scope
  4. tokens              render with the model's chat template: assistant mask and end-of-turn checked,
                         token counts; length outliers dropped or truncated from the front
  5. dedupe              exact (normalised hash) then near (MinHash LSH), across all sources
  6. split               seeded, stratified by source; mixing weights on train; leakage reported
Outputs in cfg.output_dir: train.jsonl, val.jsonl (OpenAI format, no meta: uploadable as is),
ledger.jsonl (one line per input record), quarantine.jsonl (raw rejected records), stats.json,
report.html and plots/*.png.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import tempfile
import time
from array import array
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chattune.config.prepare import PrepareConfig
from chattune.data import clean
from chattune.data.conversation import Conversation, Message
from chattune.data.dedupe import DuplicateFinder, normalised_text, text_hash
from chattune.data.glossary import Glossary
from chattune.data.ingest import RawRecord, iter_source
from chattune.data.parallel import WorkerPool, parallel_map_batches
from chattune.data.pii import redact
from chattune.data.results import EXAMPLE_CHARS, PrepareResult, Stats
from chattune.data.tokenize import ChatRenderer, render_segments, token_ids
from chattune.data.validate import check_record, openai_estimate, token_stats
from chattune.errors import DataError
from chattune.hardware import training_time_estimate

if TYPE_CHECKING:
    from rich.console import Console
    from transformers import PreTrainedTokenizerBase


@dataclass(slots=True)
class Item:
    """One input record on its way through the stages."""

    rec: RawRecord
    messages: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    fixes: list[str] = field(default_factory=list)
    reason: str | None = None  # set when dropped
    detail: str = ""
    dup_of: int | None = None  # index of the kept item this one duplicates
    tokens: int = 0  # whole rendered conversation
    trained_tokens: int = 0  # assistant tokens the loss is computed on
    split: str | None = None
    copies: int = 1
    flags: list[str] = field(default_factory=list)  # kept, but marked for review (scope.action: flag)

    @property
    def alive(self) -> bool:
        return self.reason is None

    def drop(self, reason: str, detail: str = "") -> None:
        self.reason, self.detail = reason, detail


@dataclass(slots=True)
class Record:
    """One input record after the per-record stages; one row of the spool files between passes."""

    key: int  # source number << 40 | line or index: where it came from, in 8 bytes
    raw: Any  # what was read, for the quarantine file
    reason: str | None = None  # set when dropped
    detail: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # kept, but marked for review (scope.action: flag)
    tokens: int = 0  # whole rendered conversation
    trained: int = 0  # assistant tokens the loss is computed on
    exact: bytes | None = None  # dedupe signature: hash of the normalised text
    sketch: Any = None  # dedupe signature: MinHash values (uint16)
    prompt: bytes = b""  # hash of the first user prompt (leakage check)
    dup_of: int | None = None  # key of the kept record this one duplicates
    split: str | None = None
    copies: int = 1

    @property
    def alive(self) -> bool:
        return self.reason is None

    def drop(self, reason: str, detail: str = "") -> None:
        self.reason, self.detail = reason, detail


def run(
    cfg: PrepareConfig,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int,
    epochs: float = 1.0,
    n_params: int | None = None,
    console: Console | None = None,
) -> PrepareResult:
    """Prepare every source in `cfg` and write the outputs; see the module docstring for the stages.

    Records stream through three passes, a chunk at a time, so memory does not grow with the data:
    1. read, validate, clean, filter and render each record (forked workers), spooled to disk;
    2. drop by the thresholds only the whole set can give (scope, length outliers), then dedupe in
       source order, so the member a cluster keeps is one that survived every other filter;
    3. split, and write train/val, the ledger and the quarantine file in input order.
    """
    from rich.console import Console

    console = console or Console(quiet=True)
    stats = Stats()
    timer = _StageTimer()
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)
    finder = DuplicateFinder(cfg.dedupe) if cfg.dedupe.exact or cfg.dedupe.near else None
    sources = Sources(cfg)
    with tempfile.TemporaryDirectory(dir=out, prefix=".spool-") as tmp, console.status("reading") as status:
        spool = Path(tmp)
        with timer("read_clean_tokens"):
            first = first_pass(cfg, tokenizer, finder, sources, stats, spool / "1", status)
        with timer("scope"):
            scope = scope_verdicts(cfg, first, stats, spool) if first.scope is not None else None
        with timer("dedupe"):
            status.update("finding duplicates")
            second = second_pass(cfg, tokenizer, finder, sources, first, scope, stats, spool)
        with timer("write"):
            status.update("writing outputs")
            result = write_outputs(cfg, sources, second, stats, spool / "2", max_length, epochs, n_params)
    if cfg.report:
        from chattune.data.report import write_report

        with timer("report"):
            write_report(out, result, stats)
    result.stats["seconds"] = timer.seconds
    return result


class _StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - t0, 2)


class Sources:
    """Record keys (source number and line/index in 8 bytes) and the ledger's `where` for each."""

    def __init__(self, cfg: PrepareConfig):
        self.cfg = cfg
        self.files: list[str] = [str(s.path) for s in cfg.sources]
        self.names: list[str] = [s.name for s in cfg.sources]
        self.loc_kind: list[str] = ["line"] * len(cfg.sources)

    @staticmethod
    def key(source: int, loc: int) -> int:
        return source << 40 | loc

    def where(self, key: int) -> dict[str, Any]:
        s, loc = key >> 40, key & (1 << 40) - 1
        return {"source": self.names[s], "file": self.files[s], self.loc_kind[s]: loc}

    def text(self, key: int) -> str:
        s, loc = key >> 40, key & (1 << 40) - 1
        return f"{self.files[s]}:{loc}" if self.loc_kind[s] == "line" else f"{self.files[s]}[{loc}]"

    def read(self) -> Iterator[tuple[int, RawRecord]]:
        for i, src in enumerate(self.cfg.sources):
            for rec in iter_source(src):
                self.files[i], self.loc_kind[i] = rec.file, rec.loc_kind
                yield self.key(i, rec.loc), rec


def _spool_write(fh: Any, rows: list[Record]) -> None:
    pickle.dump(rows, fh, protocol=pickle.HIGHEST_PROTOCOL)


def _spool_read(path: Path) -> Iterator[list[Record]]:
    # Our own temporary file, written by this run: pickle is safe here and ~5x faster than JSON.
    with path.open("rb") as fh:
        while True:
            try:
                yield pickle.load(fh)
            except EOFError:
                return


# ----------------------------------------------------------------------------------------------------
# pass 1: ingest + validate, text repairs, noise, tokens, signatures (per record, in workers)


@dataclass
class FirstPass:
    n_input: int
    alive_tokens: Any  # numpy int32: tokens of each record alive after pass 1, in order
    scope: clean.ScopeIndex | None  # embeddings of the same records, when scope.description is set
    alive_keys: Any = None  # numpy int64 keys of those records (for the report's borderline list)


def first_pass(
    cfg: PrepareConfig,
    tokenizer: PreTrainedTokenizerBase,
    finder: DuplicateFinder | None,
    sources: Sources,
    stats: Stats,
    path: Path,
    status: Any,
) -> FirstPass:
    glossary = Glossary(cfg.glossary.terms) if cfg.glossary.terms else None
    keywords = clean.keyword_pattern(cfg.scope.keywords)
    eot = end_of_turn_ids(tokenizer) if cfg.roundtrip else set()

    def work(chunk: list[tuple[Any, str | None, str, list[str]]]) -> ChunkResult:
        return process_chunk(chunk, cfg, glossary, keywords, tokenizer, eot, finder)

    scope = clean.ScopeIndex(cfg.scope, path.parent) if cfg.scope.description else None
    in_flight: deque[list[tuple[int, RawRecord]]] = deque()

    def payloads() -> Iterator[list[tuple[Any, str | None, str, list[str]]]]:
        for chunk in _chunks(sources.read(), CHUNK):
            in_flight.append(chunk)
            yield [(rec.obj, rec.error, rec.detail, rec.repairs) for _, rec in chunk]

    n = 0
    tokens, keys = array("i"), array("q")
    with WorkerPool(work) as pool, path.open("wb") as fh:
        for result in pool.imap(payloads()):
            chunk = in_flight.popleft()
            stats.categories.update(result.categories)
            stats.pii.update(result.pii)
            stats.glossary.update(result.glossary)
            stats.languages.update(result.languages)
            for kind, before, after in result.examples:
                stats.example(kind, before, after)
            alive = []
            for (key, rec), row in zip(chunk, result.records, strict=True):
                row.key, row.raw = key, rec.raw
                if row.alive:
                    alive.append(row)
            tokens.extend(r.tokens for r in alive)
            keys.extend(r.key for r in alive)
            if scope is not None:
                scope.add([clean.scope_text(r.messages) for r in alive])
            _spool_write(fh, result.records)
            n += len(chunk)
            status.update(f"reading, cleaning, rendering: {n:,} records")
    return FirstPass(n, np.frombuffer(tokens, dtype=np.int32), scope, np.frombuffer(keys, dtype=np.int64))


CHUNK = 2000  # records per worker task: large enough to amortise pickling, small enough to stream


def _chunks(it: Iterator[Any], size: int) -> Iterator[list[Any]]:
    buf: list[Any] = []
    for x in it:
        buf.append(x)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


@dataclass
class ChunkResult:
    records: list[Record]
    categories: Counter[str] = field(default_factory=Counter)
    pii: Counter[str] = field(default_factory=Counter)
    glossary: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    examples: list[tuple[str, str, str]] = field(default_factory=list)


def process_chunk(
    chunk: list[tuple[Any, str | None, str, list[str]]],
    cfg: PrepareConfig,
    glossary: Glossary | None,
    keywords: re.Pattern[str] | None,
    tokenizer: PreTrainedTokenizerBase,
    eot: set[int],
    finder: DuplicateFinder | None,
) -> ChunkResult:
    """Every per-record stage for a chunk of (decoded record, read error, detail, repairs), in order:
    validate, text repairs + PII + glossary, noise/language/keywords, render and count tokens, and the
    dedupe and leakage signatures. Pure: runs in a worker process."""
    res = ChunkResult([])
    for obj, error, detail, repairs in chunk:
        row = Record(0, None)
        res.records.append(row)
        if error:
            res.categories[error] += 1
            row.drop(error, detail)
            continue
        checked = check_record(obj)
        res.categories.update(repairs + checked.categories)
        if checked.reason:
            row.drop(checked.reason, checked.detail)
            continue
        row.messages, row.fixes = checked.messages, repairs + checked.fixes
        cleaned = clean_messages(row.messages, cfg, glossary)
        if cleaned is not None:
            for m, text in zip(row.messages, cleaned.contents, strict=True):
                m["content"] = text
            row.fixes += cleaned.fixes
            res.pii.update(cleaned.pii)
            res.glossary.update(cleaned.glossary)
            res.examples += cleaned.examples
        verdict = noise_verdict(row.messages, cfg, keywords)
        if verdict.messages is not None:
            row.messages = verdict.messages
            row.fixes.append("dropped_empty_turns")
        if verdict.language is not None:
            res.languages[verdict.language] += 1
        if verdict.drop is not None:
            row.drop(*verdict.drop)
    alive = [r for r in res.records if r.alive]
    if alive:
        measured = _measure_batch([r.messages for r in alive], tokenizer, cfg.roundtrip, eot)
        for row, (tokens, trained, problem) in zip(alive, measured, strict=True):
            row.tokens, row.trained = tokens, trained
            if problem:
                row.drop("roundtrip_failed", problem)
            else:
                sign(row, finder)
    return res


def sign(row: Record, finder: DuplicateFinder | None) -> None:
    """Dedupe and leakage signatures of a record's (final) messages."""
    if finder is not None:
        row.exact, row.sketch = finder.signature(row.messages)
    prompt = next((m for m in row.messages if m["role"] == "user"), {"role": "user", "content": ""})
    row.prompt = text_hash(normalised_text([prompt]))


@dataclass(slots=True)
class Cleaned:
    contents: list[str]  # the new text of each message
    fixes: list[str]
    pii: Counter[str]
    glossary: Counter[str]
    examples: list[tuple[str, str, str]]  # (fix kind, before, after), cut to the report's length


def clean_messages(
    messages: list[dict[str, Any]], cfg: PrepareConfig, glossary: Glossary | None
) -> Cleaned | None:
    """Text repairs, PII redaction and glossary terms on one conversation; None when nothing changed."""
    contents, fixes, examples = [], set(), []
    pii: Counter[str] = Counter()
    terms: Counter[str] = Counter()

    def example(kind: str, before: str, after: str) -> None:
        examples.append((kind, before[:EXAMPLE_CHARS], after[:EXAMPLE_CHARS]))

    for m in messages:
        text = m["content"]
        new, kinds = clean.fix_text(text, cfg.text)
        for kind in kinds:
            example(kind, text, new)
        fixes.update(kinds)
        if cfg.pii.enabled:
            redacted, found = redact(new, cfg.pii)
            if found:
                pii.update(found)
                example("pii", new, redacted)
                fixes.update(f"pii:{k}" for k in found)
                new = redacted
        if glossary is not None:
            normalised, found = glossary.apply(new)
            if found:
                terms.update(found)
                example("glossary", new, normalised)
                fixes.update(f"glossary:{k}" for k in found)
                new = normalised
        contents.append(new)
    if not fixes:
        return None
    return Cleaned(contents, sorted(fixes), pii, terms, examples)


@dataclass(slots=True)
class NoiseVerdict:
    messages: list[dict[str, Any]] | None = None  # replaces the messages when empty turns were removed
    language: str | None = None  # detected, when a language filter is on
    drop: tuple[str, str] | None = None  # (reason, detail)


def noise_verdict(
    messages: list[dict[str, Any]], cfg: PrepareConfig, keywords: re.Pattern[str] | None
) -> NoiseVerdict:
    """Empty turns, junk, language and keyword scope for one conversation, in that order (the first
    reason to drop wins). Scope by embedding similarity runs afterwards, batched, in filter_noise."""
    verdict = NoiseVerdict()
    if any(clean.is_empty(m) for m in messages):
        if cfg.noise.empty_turns == "drop_conversation" and any(
            clean.is_empty(m) for m in messages if m["role"] != "system"
        ):
            verdict.drop = ("empty_turn", "a user or assistant turn has no text")
            return verdict
        messages = verdict.messages = clean.drop_empty_turns(messages)
        if not any(m["role"] == "assistant" for m in messages):
            verdict.drop = ("empty_turn", "no assistant turn left after removing empty turns")
            return verdict
    if cfg.noise.enabled and (noise := clean.noise_reason(messages, cfg.noise)):
        verdict.drop = noise
        return verdict
    if keep_langs := cfg.language.keep:
        lang = verdict.language = clean.detect_language(messages, cfg.language.min_chars)
        if lang != "und" and lang not in keep_langs:
            verdict.drop = ("language", f"detected {lang!r}, keeping {', '.join(sorted(keep_langs))}")
            return verdict
    if keywords is not None and not cfg.scope.description and not keywords.search(clean.scope_text(messages)):
        verdict.drop = ("off_scope", "mentions none of scope.keywords")
    return verdict


# ----------------------------------------------------------------------------------------------------
# 4. tokens: round trip through the chat template, length outliers


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Token ids that end an assistant turn: eos, and the special token the template closes a turn with."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    probe = Conversation(
        messages=[Message(role="user", content="hi"), Message(role="assistant", content="hello")]
    )
    trained = [text for text, is_trained in render_segments(probe, tokenizer) if is_trained]
    if trained:
        last = tokenizer(trained[-1], add_special_tokens=False)["input_ids"][-1:]
        ids.update(t for t in last if t in set(tokenizer.all_special_ids))
    return ids


def measure_tokens(items: list[Item], tokenizer: PreTrainedTokenizerBase, *, check: bool = True) -> None:
    """Set item.tokens from the chat-template rendering; with `check`, drop items whose rendering trains
    no assistant token or never trains the end-of-turn token (the model would not learn to stop)."""
    if not items:
        return
    eot = end_of_turn_ids(tokenizer) if check else set()
    results = parallel_map_batches(
        lambda batch: _measure_batch([it.messages for it in batch], tokenizer, check, eot), items
    )
    for item, (tokens, trained, problem) in zip(items, results, strict=True):
        item.tokens, item.trained_tokens = tokens, trained
        if problem:
            item.drop("roundtrip_failed", problem)


def _measure_batch(
    batch: list[list[dict[str, Any]]], tokenizer: PreTrainedTokenizerBase, check: bool, eot: set[int]
) -> list[tuple[int, int, str]]:
    """(tokens, trained tokens, problem or "") for each conversation of a batch."""
    pieces: list[tuple[int, str, bool]] = []  # (position in batch, text, trained)
    problems = [""] * len(batch)
    render = ChatRenderer(tokenizer)
    for pos, messages in enumerate(batch):
        conv = Conversation(messages=[Message(**m) for m in messages])
        if not check:
            pieces.append((pos, render(conv.as_dicts()), False))
            continue
        try:
            segments = render_segments(conv, tokenizer, render)
        except DataError as e:
            problems[pos] = str(e)
            continue
        pieces += [(pos, text, trained) for text, trained in segments]
    ids = token_ids(tokenizer, [p[1] for p in pieces])
    total = [0] * len(batch)
    trained_ids: list[list[int]] = [[] for _ in batch]
    for (pos, _, trained), piece in zip(pieces, ids, strict=True):
        total[pos] += len(piece)
        if trained:
            trained_ids[pos] += piece
    for pos in range(len(batch)):
        if problems[pos] or not check:
            continue
        if not trained_ids[pos]:
            problems[pos] = "no assistant token is trained after rendering with the chat template"
        elif eot and not eot.intersection(trained_ids[pos]):
            problems[pos] = "the end-of-turn token is not among the trained tokens"
    return [(total[p], len(trained_ids[p]), problems[p]) for p in range(len(batch))]


def outlier_limit(lengths: list[int], cfg: PrepareConfig) -> float | None:
    import numpy as np

    if cfg.outliers.method == "none" or len(lengths) < 4:
        return None
    a = np.asarray(lengths, dtype=np.float64)
    if cfg.outliers.method == "iqr":
        q1, q3 = np.percentile(a, [25, 75])
        return float(q3 + cfg.outliers.k * (q3 - q1))
    return float(a.mean() + cfg.outliers.z * a.std())


def _preview(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m['role']}: {m['content'][:80]}" for m in messages)


# ----------------------------------------------------------------------------------------------------
# between the passes: scope calibrated on the whole set


def scope_verdicts(cfg: PrepareConfig, first: FirstPass, stats: Stats, spool: Path) -> Any:
    """Scores of the records alive after pass 1 (in order) and the threshold set on them; fills what
    the report shows: the histogram and the records nearest the threshold on both sides."""
    assert first.scope is not None
    sc = first.scope.scores()
    order = np.argsort(sc.scores, kind="stable")
    cut = int(np.count_nonzero(sc.scores < sc.threshold))
    n = cfg.scope.borderline
    near = {int(first.alive_keys[i]): float(sc.scores[i]) for i in order[max(0, cut - n) : cut + n]}
    stats.scope = {
        "threshold": round(sc.threshold, 4),
        "calibrated": sc.calibrated,
        "how": sc.how,
        "median": round(sc.median, 4),
        "sigma": round(sc.sigma, 4),
        "action": cfg.scope.action,
        "below": cut,
        "scored": len(sc.scores),
    }
    stats.scope_scores = sc.scores
    stats.scope_borderline_keys = near  # filled with previews in pass 2
    return sc


# ----------------------------------------------------------------------------------------------------
# pass 2: scope and length verdicts, then dedupe in source order


@dataclass
class SecondPass:
    n_input: int
    alive_per_source: Counter[int]
    clusters: dict[int, list[int]]  # kept key -> keys of its first few duplicates
    cluster_sizes: Counter[int]  # kept key -> number of duplicates


def second_pass(
    cfg: PrepareConfig,
    tokenizer: PreTrainedTokenizerBase,
    finder: DuplicateFinder | None,
    sources: Sources,
    first: FirstPass,
    scope: Any,
    stats: Stats,
    spool: Path,
) -> SecondPass:
    keywords = clean.keyword_pattern(cfg.scope.keywords)
    stats.tokens_before = array("i", first.alive_tokens.tolist())
    limit = outlier_limit(first.alive_tokens, cfg)
    eot = end_of_turn_ids(tokenizer) if cfg.roundtrip else set()
    how = scope.how if scope is not None else ""
    borderline = stats.scope_borderline_keys
    found_borderline: list[tuple[str, float, str]] = []
    alive_i = 0
    out = SecondPass(first.n_input, Counter(), defaultdict(list), Counter())
    with (spool / "2").open("wb") as fh:
        for rows in _spool_read(spool / "1"):
            for row in rows:
                if not row.alive:
                    continue
                if scope is not None:
                    score = float(scope.scores[alive_i])
                    if row.key in borderline:
                        found_borderline.append((sources.text(row.key), score, _preview(row.messages)))
                    text = clean.scope_text(row.messages)
                    if score < scope.threshold and not (keywords is not None and keywords.search(text)):
                        detail = f"scope score {score:.3f} below the threshold {scope.threshold:.3f} ({how})"
                        if cfg.scope.action == "drop":
                            row.drop("off_scope", detail)
                        else:
                            row.flags.append(f"off_scope: {detail}")
                alive_i += 1
                if row.alive and limit is not None and row.tokens > limit:
                    handle_outlier(row, cfg, tokenizer, eot, limit, finder, stats)
            alive = [r for r in rows if r.alive]
            if finder is not None and alive:
                for row, hit in zip(
                    alive,
                    finder.find([r.key for r in alive], [(r.exact, r.sketch) for r in alive]),
                    strict=True,
                ):
                    if hit is not None:
                        kept, kind = hit
                        row.dup_of = kept
                        row.drop(kind, f"duplicates {sources.text(kept)}")
                        out.cluster_sizes[kept] += 1
                        if len(out.clusters[kept]) < 5:
                            out.clusters[kept].append(row.key)
            for row in rows:
                row.exact = row.sketch = None  # not needed any more: keep spool 2 small
                if row.alive:
                    out.alive_per_source[row.key >> 40] += 1
            _spool_write(fh, rows)
    stats.scope_borderline = sorted(found_borderline, key=lambda x: x[1])
    return out


def handle_outlier(
    row: Record,
    cfg: PrepareConfig,
    tokenizer: PreTrainedTokenizerBase,
    eot: set[int],
    limit: float,
    finder: DuplicateFinder | None,
    stats: Stats,
) -> None:
    """Drop a conversation over the length limit, or cut whole turns from its front (then re-render it
    and sign it again: its text changed)."""
    why = f"{row.tokens} tokens, above the {cfg.outliers.method} limit of {limit:.0f}"
    if cfg.outliers.action == "drop":
        row.drop("length_outlier", why)
        return
    contents = [m["content"] for m in row.messages]
    msg_tokens = [len(x) for x in token_ids(tokenizer, contents)]
    overhead = max(0.0, (row.tokens - sum(msg_tokens)) / len(msg_tokens))
    shorter = clean.truncate_front(row.messages, msg_tokens, overhead, limit)
    if shorter is None:
        row.drop("length_outlier", why + "; the final exchange alone is too long")
        return
    stats.example("truncated", _preview(row.messages), _preview(shorter))
    row.messages = shorter
    row.fixes.append("truncated")
    tokens, trained, problem = _measure_batch([shorter], tokenizer, cfg.roundtrip, eot)[0]
    row.tokens, row.trained = tokens, trained
    if problem:
        row.drop("roundtrip_failed", problem)
    elif tokens > limit:
        row.drop("length_outlier", f"{tokens} tokens after truncation, above the limit of {limit:.0f}")
    else:
        sign(row, finder)


# ----------------------------------------------------------------------------------------------------
# pass 3: split and outputs


def split_plan(cfg: PrepareConfig, alive_per_source: Counter[int]) -> dict[int, set[int]]:
    """Per source, the positions (among its kept records, in order) that go to validation: a seeded
    sample of val_fraction, so every source is represented in validation."""
    plan = {}
    for s, n in alive_per_source.items():
        rng = random.Random(f"{cfg.split.seed}/{cfg.sources[s].name}")
        n_val = int(n * cfg.split.val_fraction + 0.5)  # half up: a 2-record source at 0.25 gives 1
        plan[s] = set(rng.sample(range(n), n_val))
    return plan


class KeptStats:
    """Statistics of the kept conversations, accumulated one at a time."""

    def __init__(self) -> None:
        self.tokens, self.trained, self.turns = array("i"), array("i"), array("i")
        self.train_lengths = array("i")  # one per training row (mixing copies included)
        self.missing_system = self.missing_user = 0
        self.roles: Counter[str] = Counter()
        self.by_source: Counter[str] = Counter()
        self.hashes: dict[str, array[int]] = {k: array("q") for k in ("train", "val", "train_p", "val_p")}
        self.leak_examples: list[tuple[int, bytes]] = []  # (key, prompt hash) of validation rows

    def add(self, row: Record, source: str) -> None:
        self.tokens.append(row.tokens)
        self.trained.append(row.trained)
        self.turns.append(len(row.messages))
        roles = [m["role"] for m in row.messages]
        self.roles.update(roles)
        self.missing_system += "system" not in roles
        self.missing_user += "user" not in roles
        self.by_source[source] += 1
        split = row.split or "train"
        conv = text_hash(normalised_text(row.messages))
        self.hashes[split].append(int.from_bytes(conv[:8], "little", signed=True))
        self.hashes[f"{split}_p"].append(int.from_bytes(row.prompt[:8], "little", signed=True))
        if split == "train":
            self.train_lengths.extend([row.tokens] * row.copies)
        else:
            self.leak_examples.append((row.key, row.prompt))

    def leakage(self, sources: Sources) -> dict[str, Any]:
        """Validation conversations whose first user prompt (normalised) or whole text also appears in train."""
        arr = {k: np.frombuffer(v, dtype=np.int64) for k, v in self.hashes.items()}
        conv = np.isin(arr["val"], arr["train"])
        prompt = np.isin(arr["val_p"], arr["train_p"])
        examples = [sources.text(self.leak_examples[i][0]) for i in np.flatnonzero(prompt)[:5]]
        return {
            "same_conversation": int(conv.sum()),
            "same_prompt": int(prompt.sum()),
            "examples": examples,
        }


def write_outputs(
    cfg: PrepareConfig,
    sources: Sources,
    second: SecondPass,
    stats: Stats,
    spool: Path,
    max_length: int,
    epochs: float,
    n_params: int | None,
) -> PrepareResult:
    out = cfg.output_dir
    plan = split_plan(cfg, second.alive_per_source)
    rngs = {s: random.Random(f"{cfg.split.seed}/{cfg.sources[s].name}/weight") for s in plan}
    seen: Counter[int] = Counter()
    rows_out = {"train": 0, "val": 0}
    drops: Counter[str] = Counter()
    fixes: Counter[str] = Counter()
    kept = KeptStats()
    top = {k for k, _ in second.cluster_sizes.most_common(5)}
    first_message: dict[int, str] = {}
    n_kept = n_fixed = n_flagged = n_input = 0
    with (
        (out / "train.jsonl").open("w", encoding="utf-8") as train_fh,
        (out / "val.jsonl").open("w", encoding="utf-8") as val_fh,
        (out / "ledger.jsonl").open("w", encoding="utf-8") as ledger_fh,
        (out / "quarantine.jsonl").open("w", encoding="utf-8") as quarantine_fh,
    ):
        for rows in _spool_read(spool):
            for row in rows:
                n_input += 1
                s = row.key >> 40
                if row.key in top:
                    first_message[row.key] = row.messages[0]["content"] if row.messages else ""
                if row.alive:
                    pos = seen[s]
                    seen[s] += 1
                    row.split = "val" if pos in plan[s] else "train"
                    w = cfg.sources[s].weight
                    if row.split == "train" and w != 1.0:
                        row.copies = int(w) + (rngs[s].random() < w - int(w))
                        if row.copies == 0:
                            row.drop("mix_weight", f"not sampled at source weight {w}")
                entry: dict[str, Any] = sources.where(row.key)
                if row.alive:
                    # The strict type is the last gate: whatever is written here loads with read_jsonl.
                    conv = Conversation(messages=[Message(**m) for m in row.messages])
                    line = json.dumps(conv.to_openai(with_meta=False), ensure_ascii=False) + "\n"
                    split = row.split or "train"
                    entry.update(
                        status="fixed" if row.fixes else "kept", split=split, output_line=rows_out[split] + 1
                    )
                    (train_fh if split == "train" else val_fh).write(line * row.copies)
                    rows_out[split] += row.copies
                    if row.copies != 1:
                        entry["copies"] = row.copies
                    n_kept += 1
                    n_fixed += bool(row.fixes)
                    n_flagged += bool(row.flags)
                    fixes.update({f.split(":")[0] for f in row.fixes})
                    kept.add(row, sources.names[s])
                else:
                    entry.update(status="dropped", reason=row.reason, detail=row.detail)
                    if row.dup_of is not None:
                        entry["duplicate_of"] = sources.where(row.dup_of)
                    drops[row.reason or "?"] += 1
                    quarantine_fh.write(
                        json.dumps({**entry, "raw": row.raw}, ensure_ascii=False, default=str) + "\n"
                    )
                if row.fixes:
                    entry["fixes"] = row.fixes
                if row.flags:
                    entry["flags"] = row.flags
                ledger_fh.write(json.dumps(entry, ensure_ascii=False) + "\n")

    stats.top_clusters = [
        (
            sources.text(k),
            second.cluster_sizes[k],
            first_message.get(k, "")[:160],
            ", ".join(sources.text(d) for d in second.clusters[k]),
        )
        for k, _ in second.cluster_sizes.most_common(5)
    ]
    stats.kept_roles, stats.kept_turns = kept.roles, Counter(kept.turns)
    stats.tokens_after = kept.tokens
    oa_epochs, billed = openai_estimate(kept.train_lengths)
    summary_stats = {
        "input": n_input,
        "kept": n_kept,
        "fixed": n_fixed,
        "dropped": n_input - n_kept,
        "train_rows": rows_out["train"],
        "val_rows": rows_out["val"],
        "drops": dict(drops.most_common()),
        "fixes": dict(fixes.most_common()),
        "validation_categories": dict(stats.categories.most_common()),
        "pii": dict(stats.pii),
        "glossary": dict(stats.glossary),
        "languages": dict(stats.languages.most_common()),
        "scope": stats.scope,
        "flagged": n_flagged,
        "by_source": dict(kept.by_source),
        "duplicate_clusters": len(second.cluster_sizes),
        "leakage": kept.leakage(sources),
        "messages_per_conversation": token_stats(kept.turns),
        "tokens_per_conversation": token_stats(kept.tokens),
        "over_max_length": int(np.count_nonzero(np.frombuffer(kept.tokens, dtype=np.int32) > max_length)),
        "max_length": max_length,
        "missing_system": kept.missing_system,
        "missing_user": kept.missing_user,
        "assistant_tokens": token_stats(kept.trained),
        "openai": {"epochs": oa_epochs, "billed_tokens": billed},
        "local_training_estimate": training_time_estimate(sum(kept.train_lengths), epochs, n_params),
    }
    (out / "stats.json").write_text(json.dumps(summary_stats, indent=2), encoding="utf-8")
    return PrepareResult(
        out,
        n_input,
        n_kept,
        n_fixed,
        n_input - n_kept,
        rows_out["train"],
        rows_out["val"],
        drops,
        fixes,
        summary_stats,
    )


def conversation_stats(
    messages: list[list[dict[str, Any]]], tokens: list[int], max_length: int
) -> dict[str, Any]:
    return {
        "messages_per_conversation": token_stats([len(m) for m in messages]),
        "tokens_per_conversation": token_stats(tokens),
        "over_max_length": sum(t > max_length for t in tokens),
        "max_length": max_length,
        "missing_system": sum(not any(x["role"] == "system" for x in m) for m in messages),
        "missing_user": sum(not any(x["role"] == "user" for x in m) for m in messages),
    }
