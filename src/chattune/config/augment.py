"""The `augment:` section of a run config."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from chattune.config.section import Section
from chattune.config.teacher import TeacherConfig


class AugmentOps(Section):
    """Probability that each operation is applied to a user turn, per copy (0 disables it)."""

    keyboard_typo: float = Field(0.2, ge=0, le=1, description="Hit a neighbouring key on a QWERTY keyboard.")
    letters: float = Field(0.2, ge=0, le=1, description="Drop, double or swap letters inside words.")
    spelling: float = Field(
        0.2, ge=0, le=1, description="US <-> UK spelling variants and common misspellings."
    )
    casing: float = Field(0.2, ge=0, le=1, description="all lower case, no capital, ALL CAPS, Title Case.")
    punctuation: float = Field(
        0.3, ge=0, le=1, description="Drop or repeat final punctuation, drop commas or apostrophes."
    )
    contractions: float = Field(0.3, ge=0, le=1, description="do not <-> don't, I am <-> I'm, ...")
    structure: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Question forms and word order ('How do I X?' -> 'Can you tell me how to X?').",
    )
    synonyms: float = Field(
        0.4, ge=0, le=1, description="Replace words from the offline lexicon shipped with chattune."
    )
    random_insert: float = Field(
        0.05, ge=0, le=1, description="Insert a filler word or a synonym of a word at a random place."
    )
    random_delete: float = Field(0.05, ge=0, le=1, description="Delete random words.")
    random_swap: float = Field(0.05, ge=0, le=1, description="Swap two random words.")
    paraphrase: float = Field(
        0.0, ge=0, le=1, description="Rewrite the turn with the teacher model (slow; cached)."
    )


class AugmentConfig(Section):
    input: Path | None = Field(
        None, description="OpenAI-messages JSONL to augment; default: data.train_file."
    )
    output: Path | None = Field(
        None,
        description="Where to write originals + copies; default: <input stem>.augmented.jsonl beside it.",
    )
    copies: int = Field(2, ge=0, description="Augmented copies per conversation.")
    seed: int = Field(0, description="The same seed and input give the same output, byte for byte.")
    keep_originals: bool = Field(True, description="Write each original conversation before its copies.")
    word_rate: float = Field(
        0.15, gt=0, le=1, description="Share of words a word-level operation touches (at least one)."
    )
    char_rate: float = Field(
        0.03, gt=0, le=1, description="Share of characters a typo operation touches (at least one)."
    )
    max_tries: int = Field(
        5, ge=1, description="Re-draws when a copy comes out identical to its original or an earlier copy."
    )
    ops: AugmentOps = Field(default_factory=AugmentOps)
    teacher: TeacherConfig | None = Field(
        None, description="Teacher for `ops.paraphrase`; default: the embedded model."
    )
