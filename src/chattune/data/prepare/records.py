"""A record on its way through `data prepare`, where it came from, and the spool files between passes."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO, cast

from chattune.config.prepare import PrepareConfig
from chattune.data.ingest import RawRecord, iter_source


@dataclass(slots=True)
class Record:
    """One input record after the per-record stages: what the whole-set passes and the outputs need,
    in plain data (a pydantic model costs ~30x more to pickle, and records cross processes and files)."""

    key: int  # source number << 40 | line or index: where it came from, in 8 bytes
    raw: Any  # what was read, for the quarantine file
    reason: str | None = None  # set when dropped
    detail: str = ""
    line: str = ""  # the cleaned conversation: its line in train.jsonl / val.jsonl, made in the worker
    roles: str = ""  # first letter of each message's role ("sua"): what the statistics need of it
    fixes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # kept, but marked for review (scope.action: flag)
    tokens: int = 0  # whole rendered conversation
    trained: int = 0  # assistant tokens the loss is computed on
    digest: bytes = b""  # hash of the normalised text: exact dedupe and leakage
    sketch: bytes | None = None  # MinHash values (uint16) for near dedupe
    prompt: bytes = b""  # hash of the first user prompt (leakage check)
    scope_text: str = ""  # what the scope filter embeds (only when scope.description is set)
    on_keywords: bool = False  # mentions one of scope.keywords (which overrides the scope score)
    dup_of: int | None = None  # key of the kept record this one duplicates
    split: str | None = None
    copies: int = 1

    @property
    def alive(self) -> bool:
        return self.reason is None

    def drop(self, reason: str, detail: str = "") -> None:
        self.reason, self.detail = reason, detail

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The cleaned messages (decoded from the line: only a few rows need them after pass 1)."""
        return cast(list[dict[str, Any]], json.loads(self.line)["messages"]) if self.line else []

    def __reduce__(self) -> tuple[type[Record], tuple[Any, ...]]:
        # Positional fields pickle ~2x faster than the slots' default (a dict built per record), and
        # every record is pickled three times: worker to parent, and into each spool file.
        return Record, tuple(getattr(self, f) for f in _FIELDS)


_FIELDS = tuple(f.name for f in fields(Record))


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


def spool_write(fh: BinaryIO, rows: list[Record]) -> None:
    pickle.dump(rows, fh, protocol=pickle.HIGHEST_PROTOCOL)


def spool_read(path: Path) -> Iterator[list[Record]]:
    # Our own temporary file, written by this run: pickle is safe here and ~5x faster than JSON.
    with path.open("rb") as fh:
        while True:
            try:
                yield pickle.load(fh)
            except EOFError:
                return


def chunks(it: Iterator[Any], size: int) -> Iterator[list[Any]]:
    buf: list[Any] = []
    for x in it:
        buf.append(x)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf
