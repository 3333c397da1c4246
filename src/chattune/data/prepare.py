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
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chattune.data import clean
from chattune.data.conversation import Conversation, Message
from chattune.data.dedupe import DuplicateFinder, normalised_text, text_hash
from chattune.data.glossary import Glossary
from chattune.data.ingest import RawRecord, iter_source
from chattune.data.parallel import parallel_map, parallel_map_batches
from chattune.data.pii import redact
from chattune.data.prepare_config import PrepareConfig
from chattune.data.tokenize import ChatRenderer, render_segments, token_ids
from chattune.data.validate import check_record, openai_estimate, token_stats
from chattune.errors import ChattuneError, ConfigError, DataError

if TYPE_CHECKING:
    from rich.console import Console
    from transformers import PreTrainedTokenizerBase

    from chattune.config import DataConfig

EXAMPLES_PER_FIX = 3
EXAMPLE_CHARS = 400


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


@dataclass
class PrepareResult:
    output_dir: Path
    n_input: int
    n_kept: int
    n_fixed: int
    n_dropped: int
    n_train: int  # rows written, mixing copies included
    n_val: int
    drops: Counter[str]
    fixes: Counter[str]
    stats: dict[str, Any]

    @property
    def train_file(self) -> Path:
        return self.output_dir / "train.jsonl"

    @property
    def val_file(self) -> Path:
        return self.output_dir / "val.jsonl"

    def summary(self) -> str:
        return (
            f"{self.n_input} records in = {self.n_kept} kept ({self.n_fixed} fixed) + {self.n_dropped} dropped; "
            f"{self.n_train} train / {self.n_val} val rows in {self.output_dir}"
        )


class Stats:
    """Counters the report draws from."""

    def __init__(self) -> None:
        self.categories: Counter[str] = Counter()
        self.pii: Counter[str] = Counter()
        self.glossary: Counter[str] = Counter()
        self.languages: Counter[str] = Counter()
        self.examples: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.tokens_before: list[int] = []
        self.scope: dict[str, Any] = {}  # threshold, median, sigma, action, counts
        self.scope_scores: Any = None  # numpy array of every scored conversation's scope score
        self.scope_borderline: list[tuple[str, float, str]] = []  # (where, score, preview) by score

    def example(self, kind: str, before: str, after: str) -> None:
        if len(self.examples[kind]) < EXAMPLES_PER_FIX:
            self.examples[kind].append((before[:EXAMPLE_CHARS], after[:EXAMPLE_CHARS]))


def run(
    cfg: PrepareConfig,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int,
    epochs: float = 1.0,
    n_params: int | None = None,
    console: Console | None = None,
) -> PrepareResult:
    """Prepare every source in `cfg` and write the outputs; see the module docstring for the stages."""
    from rich.console import Console

    console = console or Console(quiet=True)
    stats = Stats()
    timer = _StageTimer()
    with console.status("reading sources") as status:
        with timer("ingest"):
            items = ingest(cfg, stats, status)
        status.update(f"cleaning {len(items):,} records")
        with timer("clean"):
            clean_text(items, cfg, stats)
        with timer("noise"):
            filter_noise(items, cfg, stats, status)
        status.update("rendering with the chat template")
        with timer("tokens"):
            measure_tokens([it for it in items if it.alive], tokenizer, check=cfg.roundtrip)
            handle_outliers(items, cfg, tokenizer, stats)
        status.update("finding duplicates")
        with timer("dedupe"):
            clusters = dedupe(items, cfg)
        with timer("split"):
            split(items, cfg)
            leakage = find_leakage(items)
        status.update("writing outputs")
        with timer("write"):
            result = write_outputs(items, cfg, stats, clusters, leakage, max_length, epochs, n_params)
    if cfg.report:
        from chattune.data.report import write_report

        with timer("report"):
            write_report(cfg.output_dir, items, result, stats, clusters)
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


# ----------------------------------------------------------------------------------------------------
# 1. ingest + validate


def ingest(cfg: PrepareConfig, stats: Stats, status: Any = None) -> list[Item]:
    items: list[Item] = []
    for src in cfg.sources:
        for rec in iter_source(src):
            item = Item(rec)
            items.append(item)
            if status is not None and len(items) % 10_000 == 0:
                status.update(f"reading sources: {len(items):,} records")
            if rec.error:
                stats.categories[rec.error] += 1
                item.drop(rec.error, rec.detail)
                continue
            checked = check_record(rec.obj)
            stats.categories.update(checked.categories)
            if checked.reason:
                item.drop(checked.reason, checked.detail)
                continue
            item.messages, item.meta, item.fixes = checked.messages, checked.meta, rec.repairs + checked.fixes
    return items


# ----------------------------------------------------------------------------------------------------
# 2. text repairs, PII, glossary


def clean_text(items: list[Item], cfg: PrepareConfig, stats: Stats) -> None:
    glossary = Glossary(cfg.glossary.terms) if cfg.glossary.terms else None
    alive = [it for it in items if it.alive]
    results = parallel_map(lambda it: clean_messages(it.messages, cfg, glossary), alive)
    for item, cleaned in zip(alive, results, strict=True):
        if cleaned is None:
            continue
        for m, text in zip(item.messages, cleaned.contents, strict=True):
            m["content"] = text
        item.fixes += cleaned.fixes
        stats.pii.update(cleaned.pii)
        stats.glossary.update(cleaned.glossary)
        for kind, before, after in cleaned.examples:
            stats.example(kind, before, after)


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


# ----------------------------------------------------------------------------------------------------
# 3. noise, language, scope


def filter_noise(items: list[Item], cfg: PrepareConfig, stats: Stats, status: Any = None) -> None:
    keywords = clean.keyword_pattern(cfg.scope.keywords)
    alive = [it for it in items if it.alive]
    verdicts = parallel_map(lambda it: noise_verdict(it.messages, cfg, keywords), alive)
    for item, verdict in zip(alive, verdicts, strict=True):
        if verdict.messages is not None:
            item.messages = verdict.messages
            item.fixes.append("dropped_empty_turns")
        if verdict.language is not None:
            stats.languages[verdict.language] += 1
        if verdict.drop is not None:
            item.drop(*verdict.drop)
    if cfg.scope.description:
        if status is not None:
            status.update("scoring scope with all-MiniLM-L6-v2")
        alive = [it for it in items if it.alive]
        judge_scope(alive, cfg, stats, keywords)


def judge_scope(
    alive: list[Item], cfg: PrepareConfig, stats: Stats, keywords: re.Pattern[str] | None
) -> None:
    """Score every surviving conversation for scope, calibrate the threshold on those scores, and drop
    (or flag) the ones below it; keep what the report shows: the histogram and the borderline records."""
    texts = [clean.scope_text(it.messages) for it in alive]
    sc = clean.score_scope(texts, cfg.scope)
    how = (
        f"median {sc.median:.2f} - {cfg.scope.mad_k:g} x sigma {sc.sigma:.3f}"
        if sc.calibrated
        else "scope.min_similarity"
    )
    below = []
    for it, text, score in zip(alive, texts, sc.scores.tolist(), strict=True):
        if score < sc.threshold and not (keywords is not None and keywords.search(text)):
            below.append(it)
            detail = f"scope score {score:.3f} below the threshold {sc.threshold:.3f} ({how})"
            if cfg.scope.action == "drop":
                it.drop("off_scope", detail)
            else:
                it.flags.append(f"off_scope: {detail}")
    order = sorted(range(len(alive)), key=lambda i: float(sc.scores[i]))
    cut = sum(float(sc.scores[i]) < sc.threshold for i in order)
    n = cfg.scope.borderline
    stats.scope = {
        "threshold": round(sc.threshold, 4),
        "calibrated": sc.calibrated,
        "median": round(sc.median, 4),
        "sigma": round(sc.sigma, 4),
        "action": cfg.scope.action,
        "below": len(below),
        "scored": len(alive),
    }
    stats.scope_scores = sc.scores
    stats.scope_borderline = [
        (_where(alive[i].rec), float(sc.scores[i]), _preview(alive[i].messages))
        for i in order[max(0, cut - n) : cut + n]
    ]


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


def handle_outliers(
    items: list[Item], cfg: PrepareConfig, tokenizer: PreTrainedTokenizerBase, stats: Stats
) -> None:
    alive = [it for it in items if it.alive]
    stats.tokens_before = [it.tokens for it in alive]
    limit = outlier_limit(stats.tokens_before, cfg)
    if limit is None:
        return
    long = [it for it in alive if it.tokens > limit]
    why = f"{{tokens}} tokens, above the {cfg.outliers.method} limit of {limit:.0f}"
    if cfg.outliers.action == "drop":
        for it in long:
            it.drop("length_outlier", why.format(tokens=it.tokens))
        return
    truncated = []
    for it in long:
        contents = [m["content"] for m in it.messages]
        msg_tokens = [len(x) for x in token_ids(tokenizer, contents)]
        overhead = max(0.0, (it.tokens - sum(msg_tokens)) / len(msg_tokens))
        shorter = clean.truncate_front(it.messages, msg_tokens, overhead, limit)
        if shorter is None:
            it.drop("length_outlier", why.format(tokens=it.tokens) + "; the final exchange alone is too long")
            continue
        stats.example("truncated", _preview(it.messages), _preview(shorter))
        it.messages = shorter
        it.fixes.append("truncated")
        truncated.append(it)
    measure_tokens(truncated, tokenizer, check=cfg.roundtrip)
    for it in truncated:
        if it.alive and it.tokens > limit:
            it.drop("length_outlier", why.format(tokens=it.tokens) + " after truncation")


def _preview(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m['role']}: {m['content'][:80]}" for m in messages)


# ----------------------------------------------------------------------------------------------------
# 5. dedupe, 6. split


def dedupe(items: list[Item], cfg: PrepareConfig) -> dict[int, list[int]]:
    """Drop duplicates (keeping the first of each cluster, in source order); returns kept -> duplicates."""
    clusters: dict[int, list[int]] = defaultdict(list)
    if not (cfg.dedupe.exact or cfg.dedupe.near):
        return clusters
    finder = DuplicateFinder(cfg.dedupe)
    alive = [i for i, item in enumerate(items) if item.alive]
    signatures = parallel_map(lambda i: finder.signature(items[i].messages), alive)
    for i, found in zip(alive, finder.find(alive, signatures), strict=True):
        item = items[i]
        if found is not None:
            kept, kind = found
            item.dup_of = kept
            item.drop(kind, f"duplicates {_where(items[kept].rec)}")
            clusters[kept].append(i)
    return clusters


def split(items: list[Item], cfg: PrepareConfig) -> None:
    """Seeded split per source (so every source is represented in validation), then mixing weights."""
    rng = random.Random(cfg.split.seed)
    weights = {s.name: s.weight for s in cfg.sources}
    by_source: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        if item.alive:
            by_source[item.rec.source].append(item)
    for source, group in by_source.items():
        order = list(range(len(group)))
        rng.shuffle(order)
        n_val = int(len(group) * cfg.split.val_fraction + 0.5)  # half up: a 2-record source at 0.25 gives 1
        val = set(order[:n_val])
        for j, item in enumerate(group):
            item.split = "val" if j in val else "train"
            if item.split == "train" and weights[source] != 1.0:
                w = weights[source]
                item.copies = int(w) + (rng.random() < w - int(w))
                if item.copies == 0:
                    item.drop("mix_weight", f"not sampled at source weight {w}")


def find_leakage(items: list[Item]) -> dict[str, Any]:
    """Validation conversations whose first user prompt (normalised) or whole text also appears in train."""
    alive = [it for it in items if it.alive]
    hashes = parallel_map(lambda it: (text_hash(normalised_text(it.messages)), _prompt_hash(it)), alive)
    train_convs = {conv for it, (conv, _) in zip(alive, hashes, strict=True) if it.split == "train"}
    train_prompts = {prompt for it, (_, prompt) in zip(alive, hashes, strict=True) if it.split == "train"}
    prompt_leaks, conv_leaks, examples = 0, 0, []
    for it, (conv, prompt) in zip(alive, hashes, strict=True):
        if it.split == "val":
            conv_leaks += conv in train_convs
            if prompt in train_prompts:
                prompt_leaks += 1
                if len(examples) < 5:
                    examples.append(_where(it.rec))
    return {"same_conversation": conv_leaks, "same_prompt": prompt_leaks, "examples": examples}


def _prompt_hash(item: Item) -> bytes:
    prompt = next((m for m in item.messages if m["role"] == "user"), {"role": "user", "content": ""})
    return text_hash(normalised_text([prompt]))


def _where(rec: RawRecord) -> str:
    return f"{rec.file}:{rec.loc}" if rec.loc_kind == "line" else f"{rec.file}[{rec.loc}]"


# ----------------------------------------------------------------------------------------------------
# outputs


def write_outputs(
    items: list[Item],
    cfg: PrepareConfig,
    stats: Stats,
    clusters: dict[int, list[int]],
    leakage: dict[str, Any],
    max_length: int,
    epochs: float,
    n_params: int | None,
) -> PrepareResult:
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = {"train": 0, "val": 0}
    drops: Counter[str] = Counter()
    fixes: Counter[str] = Counter()
    n_kept = n_fixed = 0
    with (
        (out / "train.jsonl").open("w", encoding="utf-8") as train_fh,
        (out / "val.jsonl").open("w", encoding="utf-8") as val_fh,
        (out / "ledger.jsonl").open("w", encoding="utf-8") as ledger_fh,
        (out / "quarantine.jsonl").open("w", encoding="utf-8") as quarantine_fh,
    ):
        for item in items:
            entry: dict[str, Any] = dict(item.rec.where)
            if item.alive:
                # The strict type is the last gate: whatever is written here loads with read_jsonl.
                conv = Conversation(messages=[Message(**m) for m in item.messages])
                line = json.dumps(conv.to_openai(with_meta=False), ensure_ascii=False) + "\n"
                fh = train_fh if item.split == "train" else val_fh
                entry.update(
                    status="fixed" if item.fixes else "kept",
                    split=item.split,
                    output_line=rows[item.split] + 1,
                )
                for _ in range(item.copies):
                    fh.write(line)
                rows[item.split] += item.copies  # type: ignore[index]
                if item.copies != 1:
                    entry["copies"] = item.copies
                n_kept += 1
                n_fixed += bool(item.fixes)
                fixes.update({f.split(":")[0] for f in item.fixes})
            else:
                entry.update(status="dropped", reason=item.reason, detail=item.detail)
                if item.dup_of is not None:
                    entry["duplicate_of"] = items[item.dup_of].rec.where
                drops[item.reason or "?"] += 1
                quarantine_fh.write(
                    json.dumps({**entry, "raw": item.rec.raw}, ensure_ascii=False, default=str) + "\n"
                )
            if item.fixes:
                entry["fixes"] = item.fixes
            if item.flags:
                entry["flags"] = item.flags
            ledger_fh.write(json.dumps(entry, ensure_ascii=False) + "\n")

    kept = [it for it in items if it.alive]
    train_lengths = [it.tokens for it in kept if it.split == "train" for _ in range(it.copies)]
    oa_epochs, billed = openai_estimate(train_lengths)
    summary_stats = {
        "input": len(items),
        "kept": n_kept,
        "fixed": n_fixed,
        "dropped": len(items) - n_kept,
        "train_rows": rows["train"],
        "val_rows": rows["val"],
        "drops": dict(drops.most_common()),
        "fixes": dict(fixes.most_common()),
        "validation_categories": dict(stats.categories.most_common()),
        "pii": dict(stats.pii),
        "glossary": dict(stats.glossary),
        "languages": dict(stats.languages.most_common()),
        "scope": stats.scope,
        "flagged": sum(bool(it.flags) for it in kept),
        "by_source": dict(Counter(it.rec.source for it in kept)),
        "duplicate_clusters": len(clusters),
        "leakage": leakage,
        **conversation_stats([it.messages for it in kept], [it.tokens for it in kept], max_length),
        "assistant_tokens": token_stats([it.trained_tokens for it in kept]),
        "openai": {"epochs": oa_epochs, "billed_tokens": billed},
        "local_training_estimate": training_time_estimate(sum(train_lengths), epochs, n_params),
    }
    (out / "stats.json").write_text(json.dumps(summary_stats, indent=2), encoding="utf-8")
    return PrepareResult(
        out,
        len(items),
        n_kept,
        n_fixed,
        len(items) - n_kept,
        rows["train"],
        rows["val"],
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


def training_time_estimate(tokens: int, epochs: float, n_params: int | None) -> dict[str, Any] | None:
    """Rough wall-clock for local training: 6 * params * tokens FLOPs at a typical sustained rate
    (40% of an A100-class GPU's bf16 peak on CUDA; about 25 GFLOP/s per CPU core in fp32)."""
    if not n_params or not tokens:
        return None
    import torch

    if torch.cuda.is_available():
        device, flops = torch.cuda.get_device_name(0), 0.4 * 312e12
    else:
        device, flops = f"CPU x{torch.get_num_threads()}", 25e9 * torch.get_num_threads()
    seconds = 6 * n_params * tokens * epochs / flops
    return {
        "device": device,
        "params": n_params,
        "tokens": tokens,
        "epochs": epochs,
        "seconds": round(seconds, 1),
    }


def model_parameter_count(model_name: str) -> int | None:
    """Parameters of a model from its config.json (no weights loaded); None when not available offline."""
    from chattune.model import resolve_source

    try:
        source = resolve_source(model_name)
        from transformers import AutoConfig

        c = AutoConfig.from_pretrained(source.path)
    except Exception:  # an estimate only: never fail preparation over it
        return None
    d, n_layers = getattr(c, "hidden_size", 0), getattr(c, "num_hidden_layers", 0)
    ff, vocab = getattr(c, "intermediate_size", 4 * d), getattr(c, "vocab_size", 0)
    if not d or not n_layers:
        return None
    # attention (4 d^2, fewer with grouped KV heads ignored) + gated MLP (3 d ff) per layer, plus embeddings.
    return int(n_layers * (4 * d * d + 3 * d * ff) + vocab * d)


def resolve_training_files(data_cfg: DataConfig) -> tuple[Path, Path | None]:
    """The files training reads: data.train_file/val_file when set, else what `data prepare` wrote into
    data.prepare.output_dir (val.jsonl only when it has rows)."""
    if data_cfg.train_file is not None:
        return data_cfg.train_file, data_cfg.val_file
    if data_cfg.prepare is None:
        raise ConfigError(
            "data", ["set data.train_file, or data.prepare and run `chattune data prepare` first"]
        )
    out = data_cfg.prepare.output_dir
    train = out / "train.jsonl"
    if not train.is_file():
        raise ChattuneError(f"{train} does not exist: run `chattune data prepare CONFIG` first")
    val = out / "val.jsonl"
    return train, val if val.is_file() and val.stat().st_size > 0 else None


# ----------------------------------------------------------------------------------------------------
# inspect


@dataclass
class Inspection:
    path: Path
    records: int
    valid: int
    categories: Counter[str]
    first_errors: dict[str, str]  # category -> where and detail of its first occurrence
    stats: dict[str, Any]
    roundtrip_failures: int
    assistant_tokens: dict[str, float]


def inspect_file(path: Path, tokenizer: PreTrainedTokenizerBase, *, max_length: int) -> Inspection:
    """Validation and statistics of one file, changing nothing (the lenient reader, the strict checks)."""
    from chattune.data.prepare_config import SourceConfig

    categories: Counter[str] = Counter()
    first_errors: dict[str, str] = {}
    items: list[Item] = []
    n = 0
    for rec in iter_source(SourceConfig(path=path)):
        n += 1
        if rec.error:
            found, reason, detail = [rec.error], rec.error, rec.detail
        else:
            checked = check_record(rec.obj)
            found, reason, detail = checked.categories, checked.reason, checked.detail
            if not reason:
                items.append(Item(rec, checked.messages))
        found = rec.repairs + found
        categories.update(found)
        for cat in found:
            first_errors.setdefault(
                cat, f"{rec.loc_kind} {rec.loc}: {detail if cat == reason else cat.replace('_', ' ')}"
            )
    # Empty turns would fail rendering in the same way training fails; keep them out of the token figures.
    items = [it for it in items if not any(clean.is_empty(m) for m in it.messages if m["role"] != "system")]
    measure_tokens(items, tokenizer, check=True)
    failures = sum(not it.alive for it in items)
    ok = [it for it in items if it.alive]
    stats = conversation_stats([it.messages for it in ok], [it.tokens for it in ok], max_length)
    epochs, billed = openai_estimate([it.tokens for it in ok])
    stats["openai"] = {"epochs": epochs, "billed_tokens": billed}
    return Inspection(
        path,
        n,
        len(items),
        categories,
        first_errors,
        stats,
        failures,
        token_stats([it.trained_tokens for it in ok]),
    )
