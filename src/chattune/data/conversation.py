"""The one data type every stage speaks: a list of role/content messages plus free-form metadata.

Every source format (OpenAI messages, ShareGPT, Alpaca, CSV, ...) converts to `Conversation` at the
edge; cleaning, scenarios, augmentation, training and evaluation never see anything else. On disk it
is one JSON object per line in OpenAI's chat fine-tuning format: `{"messages": [...], "meta": {...}}`
(OpenAI's uploader ignores unknown top-level keys only if we drop them, so `to_openai` omits `meta`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dc_field
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
        # built by hand: model_dump costs ~5x more, and data prepare writes millions of these
        messages = [
            {"role": m.role, "content": m.content}
            if m.weight is None
            else {"role": m.role, "content": m.content, "weight": m.weight}
            for m in self.messages
        ]
        out: dict[str, Any] = {"messages": messages}
        if with_meta and self.meta:
            out["meta"] = self.meta
        return out

    def as_dicts(self) -> list[dict[str, str]]:
        """Messages as plain dicts, the shape `tokenizer.apply_chat_template` expects."""
        return [{"role": m.role, "content": m.content} for m in self.messages]


MESSAGE_KEYS = frozenset({"role", "content", "weight"})
# Problems that make a record unusable, as OpenAI's data-prep cookbook counts them; the first one found
# is the record's drop reason. The reader's own (invalid_utf8, invalid_json, malformed_row) come first.
FATAL = (
    "invalid_utf8",
    "invalid_json",
    "malformed_row",
    "not_an_object",
    "missing_messages",
    "message_not_object",
    "missing_role",
    "missing_content",
    "unknown_role",
    "invalid_weight",
    "invalid_meta",
    "system_not_first",
    "consecutive_same_role",
    "no_assistant",
)
# What the strict reader (training, evaluation suites) refuses: a record that is not this format at all.
# The order of the roles is left to `chattune data prepare` and the chat template.
SHAPE_ERRORS = frozenset(FATAL[3:11])


@dataclass
class Checked:
    """What `check_record` found: the conversation (None when the record is not one), every problem
    category, the fixes made, and the first fatal problem with the field it is in."""

    conversation: Conversation | None = None
    categories: list[str] = dc_field(default_factory=list)  # every problem found, fatal or not
    fixes: list[str] = dc_field(default_factory=list)
    reason: str | None = None  # the first fatal category, when the record must be dropped
    message: str = ""
    field: str | None = None  # e.g. "messages[2].role"

    @property
    def detail(self) -> str:
        return f"{self.message} (field {self.field})" if self.field else self.message

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.conversation.to_openai()["messages"] if self.conversation is not None else []

    def fail(self, category: str, message: str, field: str | None = None) -> Checked:
        self.categories.append(category)
        if self.reason is None:
            self.reason, self.message, self.field = category, message, field
        return self


def check_record(obj: Any, *, repair: bool = True) -> Checked:
    """Validate one decoded OpenAI-format record: the one validator, for the lenient and the strict path.

    With `repair` (data prepare, uploads) what can be mended is, and counted as a fix: speaker names
    other tools write (`human`, `bot`, `GPT`) mapped to roles, content given as text parts joined,
    unknown message keys stripped, a trailing user turn trimmed, other top-level scalars kept in meta.
    Without it (`parse_openai_record`) the record must already be in the format.
    """
    out = Checked()
    if not isinstance(obj, dict):
        return out.fail("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    raw_messages = obj.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        return out.fail("missing_messages", "missing or empty 'messages' list", "messages")
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        if not repair:
            return out.fail("invalid_meta", "'meta' must be an object", "meta")
        out.categories.append("invalid_meta")
        out.fixes.append("dropped_meta")
        meta = {}
    meta = dict(meta)
    if repair:  # provenance such as an id or a source tag, kept rather than lost
        meta.update({k: v for k, v in obj.items() if k not in ("messages", "meta") and _is_scalar(v)})
    messages: list[dict[str, Any]] = []
    stripped = aliased = False
    for i, m in enumerate(raw_messages):
        at = f"messages[{i}]"
        if not isinstance(m, dict):
            out.fail("message_not_object", "message is not an object", at)
            continue
        stripped |= bool(set(m) - MESSAGE_KEYS)
        role, content = m.get("role"), m.get("content")
        if repair and isinstance(role, str) and role not in ROLES and role.strip().lower() in ROLE_ALIASES:
            role, aliased = ROLE_ALIASES[role.strip().lower()], True
        if role is None:
            out.fail("missing_role", "message has no role", f"{at}.role")
        elif role not in ROLES:
            out.fail(
                "unknown_role", f"unknown role {role!r} (expected one of {', '.join(ROLES)})", f"{at}.role"
            )
        if repair and content is not None and not isinstance(content, str):
            content = _text_parts(content)
        if not isinstance(content, str):
            out.fail("missing_content", "content is missing or not text", f"{at}.content")
        elif not content.strip():
            out.categories.append("empty_content")
        weight = m.get("weight")
        if weight not in (None, 0, 1):
            out.fail("invalid_weight", f"weight must be 0 or 1, got {weight!r}", f"{at}.weight")
        messages.append({"role": role, "content": content, "weight": weight})
    if stripped and repair:
        out.categories.append("unrecognised_keys")
        out.fixes.append("stripped_keys")
    if aliased:
        out.categories.append("role_alias")
        out.fixes.append("role_alias")
    if out.reason:
        return out
    roles = [m["role"] for m in messages]
    if "system" in roles[1:]:
        out.fail("system_not_first", f"system message at position {roles.index('system', 1)}")
    for i in range(1, len(roles)):
        if roles[i] == roles[i - 1] and roles[i] in ("user", "assistant"):
            out.fail("consecutive_same_role", f"two {roles[i]} messages in a row at {i - 1} and {i}")
            break
    if "assistant" not in roles:
        out.fail("no_assistant", "no assistant message")
    if roles[-1] == "user":
        out.categories.append("ends_on_user")
        if repair and not out.reason:
            while messages and messages[-1]["role"] == "user":
                messages.pop()
            out.fixes.append("trimmed_trailing_user")
    out.conversation = Conversation(messages=[Message(**m) for m in messages], meta=meta)
    return out


def parse_openai_record(obj: Any, *, file: str | None = None, line: int | None = None) -> Conversation:
    """The strict reader's check: a Conversation, or a one-line DataError naming the file, line and field."""
    checked = check_record(obj, repair=False)
    if checked.conversation is None:
        assert checked.reason in SHAPE_ERRORS
        raise DataError(checked.message, file=file, line=line, field=checked.field)
    return checked.conversation


def _is_scalar(v: Any) -> bool:
    return isinstance(v, str | int | float | bool) or v is None


def _text_parts(content: Any) -> str | None:
    """OpenAI's list-of-parts content ([{"type": "text", "text": ...}]) as plain text, else None."""
    if (
        isinstance(content, list)
        and content
        and all(isinstance(p, dict) and p.get("type") == "text" for p in content)
    ):
        texts = [p.get("text") for p in content]
        if all(isinstance(t, str) for t in texts):
            return "\n".join(texts)
    return None


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
