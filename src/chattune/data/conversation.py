"""The one data type every stage speaks: a list of role/content messages plus free-form metadata.

Every source format (OpenAI messages, ShareGPT, Alpaca, CSV, ...) converts to `Conversation` at the
edge; cleaning, scenarios, augmentation, training and evaluation never see anything else. On disk it
is one JSON object per line in OpenAI's chat fine-tuning format: `{"messages": [...], "meta": {...}}`
(OpenAI's uploader ignores unknown top-level keys only if we drop them, so `to_openai` omits `meta`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from chattune.errors import DataError

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
# Speaker names other tools write (ShareGPT's human/gpt, chat UIs' bot/AI/model, any case) and the role
# each means. Validation maps them and records the fix; a name not here is an unknown role.
ROLE_ALIASES = {
    "human": "user",
    "user": "user",
    "prompter": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "ai": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "function_call": "assistant",
    "system": "system",
    "function": "tool",
    "function_response": "tool",
    "observation": "tool",
    "tool": "tool",
}


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    content: str
    # OpenAI's format lets a training example mark an assistant turn as not to be learned from.
    weight: Literal[0, 1] | None = None


class Conversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[Message]
    meta: dict[str, Any] = Field(default_factory=dict)
    # "file:line" it was read from (iter_jsonl), for errors found later (tokenising, resuming); not written out
    _source: str | None = PrivateAttr(None)

    @property
    def source(self) -> str | None:
        return self._source

    @property
    def has_assistant(self) -> bool:
        return any(m.role == "assistant" and m.weight != 0 for m in self.messages)

    def to_openai(self, *, with_meta: bool = True) -> dict[str, Any]:
        """The JSON object for one line of an OpenAI-format JSONL file."""
        out: dict[str, Any] = {"messages": [m.model_dump(exclude_none=True) for m in self.messages]}
        if with_meta and self.meta:
            out["meta"] = self.meta
        return out

    def as_dicts(self) -> list[dict[str, str]]:
        """Messages as plain dicts, the shape `tokenizer.apply_chat_template` expects."""
        return [{"role": m.role, "content": m.content} for m in self.messages]


def parse_openai_record(obj: Any, *, file: str | None = None, line: int | None = None) -> Conversation:
    """Turn one decoded JSON value into a Conversation, or raise a DataError naming the field."""
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}", file=file, line=line)
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError("missing or empty 'messages' list", file=file, line=line, field="messages")
    parsed = []
    for i, m in enumerate(messages):
        field = f"messages[{i}]"
        if not isinstance(m, dict):
            raise DataError("message is not an object", file=file, line=line, field=field)
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise DataError(
                f"unknown role {role!r} (expected one of {', '.join(ROLES)})",
                file=file,
                line=line,
                field=f"{field}.role",
            )
        if not isinstance(content, str):
            raise DataError(
                "content is missing or not a string", file=file, line=line, field=f"{field}.content"
            )
        weight = m.get("weight")
        if weight not in (None, 0, 1):
            raise DataError(
                f"weight must be 0 or 1, got {weight!r}", file=file, line=line, field=f"{field}.weight"
            )
        parsed.append(Message(role=role, content=content, weight=weight))
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise DataError("'meta' must be an object", file=file, line=line, field="meta")
    return Conversation(messages=parsed, meta=meta)


def iter_json_lines(path: str | Path, *, what: str = "file") -> Iterator[tuple[int, Any]]:
    """Stream (line number, decoded JSON value) from a JSONL file; blank lines are skipped. A line that
    is not UTF-8 or not JSON raises a one-line DataError with the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such {what}", file=str(path))
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                yield lineno, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise DataError(f"invalid UTF-8 at byte {e.start}", file=str(path), line=lineno) from None
            except json.JSONDecodeError as e:
                raise DataError(
                    f"invalid JSON: {e.msg} at column {e.colno}", file=str(path), line=lineno
                ) from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Conversation]]:
    """Stream (line number, Conversation) from an OpenAI-messages JSONL file.

    Strict: the first bad record raises a one-line DataError with file, line and field. The data
    preparation stage (`chattune data prepare`) is the lenient path that quarantines bad records.
    """
    for lineno, obj in iter_json_lines(path):
        conv = parse_openai_record(obj, file=str(path), line=lineno)
        conv._source = f"{path}:{lineno}"
        yield lineno, conv


def read_jsonl(path: str | Path) -> list[Conversation]:
    return [conv for _, conv in iter_jsonl(path)]


def write_jsonl(path: str | Path, conversations: list[Conversation], *, with_meta: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for conv in conversations:
            fh.write(json.dumps(conv.to_openai(with_meta=with_meta), ensure_ascii=False) + "\n")
