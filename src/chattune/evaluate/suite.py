"""Eval suites: prompts to answer, each with an optional reference answer, rubric and category.

    items = load_suites([Path("examples/data/kettlebyte_eval.jsonl")])

One JSON object per line (the scenarios engine and the example data write this format):

    {"messages": [system?, user, (assistant, user)...],      # ends on a user turn: the prompt
     "reference": "optional ideal answer",
     "rubric": {"must_contain": [...], "must_not_contain": [...], "regex": [...]},   # all optional
     "meta": {"category": "...", "expected_behavior": "answer|clarify|decline|correct", "intent": "..."}}

Loading is strict: the first bad line raises a one-line DataError naming file, line and field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from chattune.data.conversation import iter_json_lines, parse_openai_record
from chattune.errors import DataError

Behavior = Literal["answer", "clarify", "decline", "correct"]
BEHAVIORS: tuple[str, ...] = get_args(Behavior)
NO_CATEGORY = "(none)"


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    must_contain: list[str] = Field(default_factory=list)
    must_not_contain: list[str] = Field(default_factory=list)
    regex: list[str] = Field(default_factory=list)

    @property
    def n_checks(self) -> int:
        return len(self.must_contain) + len(self.must_not_contain) + len(self.regex)


class SuiteItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str  # "<file stem>:<line>", or meta.id when the file gives one
    messages: list[dict[str, str]]  # the prompt, ending on a user turn
    reference: str | None = None
    rubric: Rubric | None = None
    category: str = NO_CATEGORY
    expected_behavior: Behavior | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """The last user turn, which is what the answer responds to."""
        return self.messages[-1]["content"]

    def with_system(self, system: str | None) -> list[dict[str, str]]:
        """The messages, with `system` prepended when the item has no system turn of its own."""
        if system and self.messages[0]["role"] != "system":
            return [{"role": "system", "content": system}, *self.messages]
        return list(self.messages)


def parse_item(obj: Any, *, file: str, line: int, default_id: str) -> SuiteItem:
    conv = parse_openai_record(obj, file=file, line=line)  # checks messages and meta
    if conv.messages[-1].role != "user":
        raise DataError(
            "the prompt must end on a user turn",
            file=file,
            line=line,
            field=f"messages[{len(conv.messages) - 1}].role",
        )
    unknown = set(obj) - {"messages", "reference", "rubric", "meta"}
    if unknown:
        raise DataError(f"unknown key(s) {', '.join(sorted(unknown))}", file=file, line=line)
    reference = obj.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise DataError("reference must be a string", file=file, line=line, field="reference")
    rubric = _parse_rubric(obj.get("rubric"), file=file, line=line)
    meta = conv.meta
    category = meta.get("category") or NO_CATEGORY
    if not isinstance(category, str):
        raise DataError("category must be a string", file=file, line=line, field="meta.category")
    behavior = meta.get("expected_behavior")
    if behavior is not None and behavior not in BEHAVIORS:
        raise DataError(
            f"unknown expected_behavior {behavior!r} (expected one of {', '.join(BEHAVIORS)})",
            file=file,
            line=line,
            field="meta.expected_behavior",
        )
    return SuiteItem(
        id=str(meta.get("id") or default_id),
        messages=conv.as_dicts(),
        reference=reference or None,
        rubric=rubric,
        category=category,
        expected_behavior=behavior,
        meta=meta,
    )


def _parse_rubric(raw: Any, *, file: str, line: int) -> Rubric | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise DataError("rubric must be an object", file=file, line=line, field="rubric")
    for key, value in raw.items():
        if key not in Rubric.model_fields:
            raise DataError(
                f"unknown rubric key {key!r} (expected {', '.join(Rubric.model_fields)})",
                file=file,
                line=line,
                field=f"rubric.{key}",
            )
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise DataError(
                "must be a list of non-empty strings", file=file, line=line, field=f"rubric.{key}"
            )
    for i, pattern in enumerate(raw.get("regex", [])):
        try:
            re.compile(pattern)
        except re.error as e:
            raise DataError(
                f"invalid regular expression: {e}", file=file, line=line, field=f"rubric.regex[{i}]"
            ) from None
    rubric = Rubric.model_validate(raw)
    return rubric if rubric.n_checks else None


def load_suite(path: str | Path) -> list[SuiteItem]:
    """Every item of one suite file, in order. Blank lines are skipped; anything else bad is an error."""
    path = Path(path)
    items = [
        parse_item(obj, file=str(path), line=lineno, default_id=f"{path.stem}:{lineno}")
        for lineno, obj in iter_json_lines(path, what="eval suite file")
    ]
    if not items:
        raise DataError("the eval suite has no items", file=str(path))
    return items


def load_suites(paths: list[Path], *, max_items: int | None = None) -> list[SuiteItem]:
    """Items of several suites, concatenated; ids must be unique. `max_items` keeps the first N overall."""
    items = [item for p in paths for item in load_suite(p)]
    seen: dict[str, int] = {}
    for item in items:
        seen[item.id] = seen.get(item.id, 0) + 1
    dupes = [k for k, n in seen.items() if n > 1]
    if dupes:
        raise DataError(f"duplicate item id(s) across suites: {', '.join(dupes[:5])}", field="meta.id")
    return items[:max_items] if max_items else items
