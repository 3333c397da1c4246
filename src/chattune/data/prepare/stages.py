"""The per-record stages of `data prepare`, each on one `Conversation`, in the order they run:

    validate    conversation.check_record, the one validator (the cookbook's categories; fatal ones drop)
    repair      ftfy, HTML -> text, whitespace; PII redaction; glossary terms
    noise       empty turns, too short / junk / repetitive, language, scope keywords
    measure     the model's chat template: token counts, the assistant mask and end of turn checked
    sign        dedupe and leakage signatures, and the output line

Pure functions of the record and the run's `Stages` (config, tokenizer, glossary...), built once before
the workers fork: `process_chunk` runs in worker processes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chattune.config.prepare import PrepareConfig
from chattune.data import clean
from chattune.data.conversation import Conversation, Message, check_record
from chattune.data.dedupe import DuplicateFinder, normalised_text, text_hash
from chattune.data.glossary import Glossary
from chattune.data.pii import redact
from chattune.data.prepare.records import Record
from chattune.data.results import EXAMPLE_CHARS
from chattune.data.tokenize import ChatRenderer, render_segments, token_ids
from chattune.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# (decoded record or None, read error, its detail, repairs made while reading): what a worker gets
Payload = tuple[Any, str | None, str, list[str]]


class Measurer:
    """Token counts of conversations from the model's chat template, and whether training them would
    work: some assistant token is trained, and so is the end-of-turn token (or the model never learns
    to stop). The renderer reuses each sequence of roles' layout (only counts are needed here)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, *, check: bool = True):
        self.tokenizer, self.check = tokenizer, check
        self.render = ChatRenderer(tokenizer, reuse_layouts=True)
        self.end_of_turn = end_of_turn_ids(tokenizer) if check else set()

    def __call__(self, batch: Sequence[Conversation]) -> list[tuple[int, int, str]]:
        """(tokens, trained tokens, problem or "") for each conversation, tokenised in one call."""
        pieces: list[tuple[int, str, bool]] = []  # (position in batch, text, trained)
        problems = [""] * len(batch)
        for pos, conv in enumerate(batch):
            if not self.check:
                pieces.append((pos, self.render(conv.as_dicts()), False))
                continue
            try:
                segments = render_segments(conv, self.tokenizer, self.render)
            except DataError as e:
                problems[pos] = str(e)
                continue
            except Exception as e:  # the template refused this conversation (raise_exception): drop it
                problems[pos] = f"the chat template refused it: {type(e).__name__}: {e}"
                continue
            pieces += [(pos, text, trained) for text, trained in segments]
        ids = token_ids(self.tokenizer, [p[1] for p in pieces])
        total = [0] * len(batch)
        trained_ids: list[list[int]] = [[] for _ in batch]
        for (pos, _, trained), piece in zip(pieces, ids, strict=True):
            total[pos] += len(piece)
            if trained:
                trained_ids[pos] += piece
        for pos in range(len(batch)):
            if problems[pos] or not self.check:
                continue
            if not trained_ids[pos]:
                problems[pos] = "no assistant token is trained after rendering with the chat template"
            elif self.end_of_turn and not self.end_of_turn.intersection(trained_ids[pos]):
                problems[pos] = "the end-of-turn token is not among the trained tokens"
        return [(total[p], len(trained_ids[p]), problems[p]) for p in range(len(batch))]


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


@dataclass
class Stages:
    """What every record's stages need, built once per run (and inherited by the forked workers)."""

    cfg: PrepareConfig
    measure: Measurer
    finder: DuplicateFinder | None
    glossary: Glossary | None = None
    keywords: re.Pattern[str] | None = None

    @classmethod
    def build(cls, cfg: PrepareConfig, tokenizer: PreTrainedTokenizerBase) -> Stages:
        finder = DuplicateFinder(cfg.dedupe) if cfg.dedupe.exact or cfg.dedupe.near else None
        return cls(
            cfg,
            Measurer(tokenizer, check=cfg.roundtrip),
            finder,
            Glossary(cfg.glossary.terms) if cfg.glossary.terms else None,
            clean.keyword_pattern(cfg.scope.keywords),
        )


@dataclass
class ChunkResult:
    records: list[Record]
    categories: Counter[str] = field(default_factory=Counter)
    pii: Counter[str] = field(default_factory=Counter)
    glossary: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    examples: list[tuple[str, str, str]] = field(default_factory=list)  # (fix kind, before, after)


def process_chunk(chunk: list[Payload], stages: Stages) -> ChunkResult:
    """Every per-record stage for a chunk of records, in order; one Record per input, dropped or not."""
    cfg = stages.cfg
    res = ChunkResult([])
    survivors: list[tuple[Record, Conversation]] = []
    for obj, error, detail, repairs in chunk:
        row = Record(0, None)
        res.records.append(row)
        if error:
            res.categories[error] += 1
            row.drop(error, detail)
            continue
        checked = check_record(obj)
        res.categories.update(repairs + checked.categories)
        if checked.reason or checked.conversation is None:
            row.drop(checked.reason or "?", checked.detail)
            continue
        row.fixes = repairs + checked.fixes
        conv = repair(checked.conversation, cfg, stages.glossary, row, res)
        verdict = noise_verdict(conv, cfg, stages.keywords)
        if verdict.conversation is not None:
            conv = verdict.conversation
            row.fixes.append("dropped_empty_turns")
        if verdict.language is not None:
            res.languages[verdict.language] += 1
        if verdict.drop is not None:
            row.drop(*verdict.drop)
        else:
            survivors.append((row, conv))
    measured = stages.measure([conv for _, conv in survivors]) if survivors else []
    for (row, conv), (tokens, trained, problem) in zip(survivors, measured, strict=True):
        row.tokens, row.trained = tokens, trained
        if problem:
            row.drop("roundtrip_failed", problem)
        else:
            sign(row, conv, stages)
    return res


def repair(
    conv: Conversation, cfg: PrepareConfig, glossary: Glossary | None, row: Record, res: ChunkResult
) -> Conversation:
    """Text repairs, PII redaction and glossary terms, message by message; the fixes go to the row and
    the counts and before/after examples to the chunk's result."""
    fixes: set[str] = set()

    def example(kind: str, before: str, after: str) -> None:
        res.examples.append((kind, before[:EXAMPLE_CHARS], after[:EXAMPLE_CHARS]))

    messages = []
    for m in conv.messages:
        text = m.content
        new, kinds = clean.fix_text(text, cfg.text)
        for kind in kinds:
            example(kind, text, new)
        fixes.update(kinds)
        if cfg.pii.enabled:
            redacted, found = redact(new, cfg.pii)
            if found:
                res.pii.update(found)
                example("pii", new, redacted)
                fixes.update(f"pii:{k}" for k in found)
                new = redacted
        if glossary is not None:
            normalised, terms = glossary.apply(new)
            if terms:
                res.glossary.update(terms)
                example("glossary", new, normalised)
                fixes.update(f"glossary:{k}" for k in terms)
                new = normalised
        messages.append(m if new == text else m.model_copy(update={"content": new}))
    if not fixes:
        return conv
    row.fixes += sorted(fixes)
    return conv.model_copy(update={"messages": messages})


@dataclass(slots=True)
class NoiseVerdict:
    conversation: Conversation | None = None  # replaces the conversation when empty turns were removed
    language: str | None = None  # detected, when a language filter is on
    drop: tuple[str, str] | None = None  # (reason, detail)


def noise_verdict(conv: Conversation, cfg: PrepareConfig, keywords: re.Pattern[str] | None) -> NoiseVerdict:
    """Empty turns, junk, language and keyword scope, in that order (the first reason to drop wins).
    Scope by embedding similarity is judged later, on the whole set (its threshold is calibrated there)."""
    verdict = NoiseVerdict()
    messages = conv.messages
    if any(clean.is_empty(m) for m in messages):
        if cfg.noise.empty_turns == "drop_conversation" and any(
            clean.is_empty(m) for m in messages if m.role != "system"
        ):
            verdict.drop = ("empty_turn", "a user or assistant turn has no text")
            return verdict
        messages = clean.drop_empty_turns(messages)
        verdict.conversation = conv.model_copy(update={"messages": messages})
        if not any(m.role == "assistant" for m in messages):
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


def sign(row: Record, conv: Conversation, stages: Stages) -> None:
    """The record's final form: its messages, its output line, and its dedupe, leakage and scope
    signatures (computed here, in the workers, so the passes over the whole set stay cheap)."""
    row.line = json.dumps(conv.to_openai(with_meta=False), ensure_ascii=False) + "\n"
    row.roles = "".join(m.role[0] for m in conv.messages)
    text = normalised_text(conv.messages)
    row.digest = text_hash(text)
    if stages.finder is not None:
        row.sketch = stages.finder.signature(text)[1]
    prompt = next((m for m in conv.messages if m.role == "user"), Message(role="user", content=""))
    row.prompt = text_hash(normalised_text([prompt]))
    if stages.cfg.scope.description:
        row.scope_text = clean.scope_text(conv.messages)
        row.on_keywords = stages.keywords is not None and bool(stages.keywords.search(row.scope_text))


def conversation_of(row: Record) -> Conversation:
    """The row's conversation as the type again (for the few rows a whole-set pass changes)."""
    return Conversation(messages=[Message(**m) for m in row.messages])


def truncate(row: Record, stages: Stages, limit: float) -> tuple[str, str] | None:
    """Cut whole turns from the front of a conversation over the length limit, then measure and sign
    it again (its text changed); (reason, detail) when it must be dropped instead."""
    tokenizer = stages.measure.tokenizer
    conv = conversation_of(row)
    msg_tokens = [len(x) for x in token_ids(tokenizer, [m.content for m in conv.messages])]
    overhead = max(0.0, (row.tokens - sum(msg_tokens)) / len(msg_tokens))
    shorter = clean.truncate_front(conv.messages, msg_tokens, overhead, limit)
    if shorter is None:
        why = f"{row.tokens} tokens, above the {stages.cfg.outliers.method} limit of {limit:.0f}"
        return "length_outlier", f"{why}; the final exchange alone is too long"
    conv = conv.model_copy(update={"messages": shorter})
    tokens, trained, problem = stages.measure([conv])[0]
    row.tokens, row.trained = tokens, trained
    if problem:
        return "roundtrip_failed", problem
    if tokens > limit:
        return "length_outlier", f"{tokens} tokens after truncation, above the limit of {limit:.0f}"
    row.fixes.append("truncated")
    sign(row, conv, stages)
    return None
