"""Augmentation: add varied copies of a dataset's user turns; assistant turns stay exactly as they were.

    chattune augment examples/quickstart.yaml augment.copies=3 augment.ops.synonyms=0.6
    result = run(cfg.augment, Path("data/train.jsonl"))

Each copy applies every operation in `augment.ops` with its probability to each user turn (see
ops.py), and is re-drawn (up to `max_tries`) when it comes out identical to its original or to an
earlier copy. Provenance goes into the copy's meta: `augmented_from` (the original's meta.id, else
FILE:LINE), `augment_ops` (what changed it), `augment_seed` and `augment_copy`. The original's meta is
carried over, `split` included, and only the file you give is augmented (by default data.train_file),
so a copy never lands on the other side of the train/validation split from its original. The same
seed and input give the same output: every draw is seeded from (seed, line, copy, try).
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import Progress

from chattune.augment.ops import OPS
from chattune.config.augment import AugmentConfig
from chattune.data.conversation import Conversation, Message, iter_jsonl, write_jsonl
from chattune.errors import ConfigError

if TYPE_CHECKING:
    from chattune.config import RunConfig


@dataclass
class AugmentResult:
    input_file: Path
    output_file: Path
    originals: int
    copies: int
    unchanged: int  # copies not written because no draw changed the conversation
    op_counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in self.op_counts.items())
        skipped = f" ({self.unchanged} copies skipped: nothing to vary)" if self.unchanged else ""
        return f"{self.originals} conversations + {self.copies} copies -> {self.output_file}{skipped}; ops applied: {ops or 'none'}"


def default_output(input_file: Path) -> Path:
    return input_file.with_name(f"{input_file.stem}.augmented.jsonl")


def run(
    cfg: AugmentConfig, input_file: Path, output_file: Path | None = None, *, console: Console | None = None
) -> AugmentResult:
    console = console or Console(quiet=True)
    output_file = output_file or cfg.output or default_output(input_file)
    records = list(iter_jsonl(input_file))  # strict: a bad line stops here with file, line and field
    paraphraser = _Paraphraser(cfg) if cfg.ops.paraphrase > 0 else None
    out: list[Conversation] = []
    op_counts: Counter[str] = Counter()
    unchanged = 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"augmenting {input_file.name}", total=len(records))
        for lineno, conv in records:
            # Copies point at their original by id; give the original that id so a later
            # train/validation split can keep the group together.
            conv.meta.setdefault("id", f"{input_file.name}:{lineno}")
            if cfg.keep_originals:
                out.append(conv)
            seen = {_user_turns(conv)}
            for copy in range(cfg.copies):
                made = None
                for attempt in range(cfg.max_tries):
                    seed = zlib.crc32(f"{cfg.seed}:{lineno}:{copy}:{attempt}".encode())
                    candidate, ops = augment_conversation(conv, cfg, random.Random(seed), paraphraser, seed)
                    if _user_turns(candidate) not in seen:
                        made = (candidate, ops, seed)
                        break
                if made is None:
                    unchanged += 1
                    continue
                candidate, ops, seed = made
                seen.add(_user_turns(candidate))
                op_counts.update(ops)
                origin = conv.meta["id"]
                candidate.meta = {
                    **conv.meta,
                    "augmented_from": origin,
                    "augment_ops": ops,
                    "augment_seed": seed,
                    "augment_copy": copy,
                }
                out.append(candidate)
            progress.advance(task)
    write_jsonl(output_file, out)
    n_orig = len(records)
    return AugmentResult(
        input_file,
        output_file,
        n_orig,
        len(out) - (n_orig if cfg.keep_originals else 0),
        unchanged,
        dict(op_counts.most_common()),
    )


def augment_conversation(
    conv: Conversation,
    cfg: AugmentConfig,
    rng: random.Random,
    paraphraser: _Paraphraser | None = None,
    seed: int = 0,
) -> tuple[Conversation, list[str]]:
    """A copy with every user turn varied; returns it and the names of the operations that changed it."""
    applied: list[str] = []
    messages = []
    for i, m in enumerate(conv.messages):
        if m.role != "user" or not m.content.strip():
            messages.append(m)
            continue
        text, ops = augment_text(m.content, cfg, rng, paraphraser, seed + i)
        applied += [op for op in ops if op not in applied]
        messages.append(Message(role="user", content=text, weight=m.weight))
    return Conversation(messages=messages, meta=dict(conv.meta)), applied


def augment_text(
    text: str, cfg: AugmentConfig, rng: random.Random, paraphraser: _Paraphraser | None = None, seed: int = 0
) -> tuple[str, list[str]]:
    probs = cfg.ops.model_dump()
    applied = []
    if paraphraser is not None and rng.random() < cfg.ops.paraphrase:
        new = paraphraser(text, seed)
        if new != text:
            text, applied = new, ["paraphrase"]
    for name, op in OPS.items():
        if rng.random() < probs[name]:
            new = op(text, rng, cfg.word_rate, cfg.char_rate)
            if new != text and new.strip():
                text = new
                applied.append(name)
    return text, applied


def _user_turns(conv: Conversation) -> tuple[str, ...]:
    return tuple(m.content for m in conv.messages if m.role == "user")


class _Paraphraser:
    """Rewrites a user turn with the teacher model (each request cached, so reruns are free)."""

    PROMPT = (
        "Rewrite the following customer message with different words. Keep the meaning, the language, every name "
        "and number. Reply with the rewritten message only.\n\nMessage: {text}"
    )

    def __init__(self, cfg: AugmentConfig):
        from chattune.config import TeacherConfig
        from chattune.teacher import Teacher

        self.teacher = Teacher(cfg.teacher or TeacherConfig())

    def __call__(self, text: str, seed: int) -> str:
        from chattune.scenarios.generators import clean_line

        draft = clean_line(
            self.teacher.complete([{"role": "user", "content": self.PROMPT.format(text=text)}], seed=seed)
        )
        # A draft that lost the message or rambled on is not a paraphrase: keep the original.
        return draft if 0.3 * len(text) <= len(draft) <= 3 * len(text) + 20 else text


def resolve_input(cfg: RunConfig) -> Path:
    """augment.input, else data.train_file."""
    aug = cfg.augment or AugmentConfig()
    path = aug.input or cfg.data.train_file
    if path is None:
        raise ConfigError("augment", ["set augment.input or data.train_file to the JSONL file to augment"])
    return Path(path)
