"""What `chattune data prepare` and `chattune data inspect` produce: counts, the ledger's totals and the
figures the report draws. Its own module so that the report reads results without importing the
pipeline that makes them."""

from __future__ import annotations

from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXAMPLES_PER_FIX = 3
EXAMPLE_CHARS = 400


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
    """Counters and per-record figures the summary and the report draw from. Figures kept per record
    are numpy-compatible arrays of small ints, so a million conversations cost a few MB here."""

    def __init__(self) -> None:
        self.categories: Counter[str] = Counter()
        self.pii: Counter[str] = Counter()
        self.glossary: Counter[str] = Counter()
        self.languages: Counter[str] = Counter()
        self.examples: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.tokens_before: array[int] = array("i")  # every conversation that reached the length check
        self.scope: dict[str, Any] = {}  # threshold, median, sigma, action, counts
        self.scope_scores: Any = None  # numpy array of every scored conversation's scope score
        self.scope_borderline: list[tuple[str, float, str]] = []  # (where, score, preview) by score
        self.scope_borderline_keys: dict[int, float] = {}  # record key -> score, nearest the threshold
        # (kept record, duplicates, its first message, some duplicates) of the largest clusters
        self.top_clusters: list[tuple[str, int, str, str]] = []
        self.tokens_after: array[int] = array("i")  # kept conversations
        self.kept_roles: Counter[str] = Counter()
        self.kept_turns: Counter[int] = Counter()

    def example(self, kind: str, before: str, after: str) -> None:
        if len(self.examples[kind]) < EXAMPLES_PER_FIX:
            self.examples[kind].append((before[:EXAMPLE_CHARS], after[:EXAMPLE_CHARS]))


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
