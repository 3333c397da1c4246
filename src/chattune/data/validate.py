"""Structural validation the way OpenAI's data-prep cookbook counts it, plus token statistics.

    result = check_record(obj)       # categories found, the messages to keep, and the fatal one if any
    stats = token_stats(tokens)      # min/max/mean/median/p5/p95
    epochs, billed = openai_estimate(lengths)

Categories follow the cookbook ("How to format inputs to ChatGPT models" / chat fine-tuning data prep):
not an object, missing messages, message missing role/content, unrecognised keys, unknown role, empty
content, no assistant message; and a few it leaves to the API: ending on a user turn, consecutive
same roles, system not first. Unrecognised keys are stripped and a trailing user turn is trimmed (both
counted as fixes); the others are fatal. Empty content is counted here and handled by the noise step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chattune.data.conversation import ROLE_ALIASES, ROLES

MESSAGE_KEYS = frozenset({"role", "content", "weight"})
# Categories that make a record unusable; the first one found is the record's drop reason.
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
    "system_not_first",
    "consecutive_same_role",
    "no_assistant",
)

# OpenAI's defaults from the cookbook: 3 epochs, scaled so that epochs * examples lands in [100, 25000].
OPENAI_MAX_TOKENS_PER_EXAMPLE = 16385
OPENAI_TARGET_EPOCHS = 3
OPENAI_MIN_TARGET_EXAMPLES = 100
OPENAI_MAX_TARGET_EXAMPLES = 25000
OPENAI_MIN_DEFAULT_EPOCHS = 1
OPENAI_MAX_DEFAULT_EPOCHS = 25


@dataclass
class Checked:
    messages: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)  # every problem found, fatal or not
    fixes: list[str] = field(default_factory=list)
    reason: str | None = None  # the fatal category, when the record must be dropped
    detail: str = ""

    def fail(self, category: str, detail: str) -> Checked:
        self.categories.append(category)
        if self.reason is None:
            self.reason, self.detail = category, detail
        return self


def check_record(obj: Any) -> Checked:
    """Validate one OpenAI-shaped record; returns the cleaned messages or the fatal reason."""
    out = Checked()
    if not isinstance(obj, dict):
        return out.fail("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        return out.fail("missing_messages", "missing or empty 'messages' list (field messages)")
    meta = obj.get("meta")
    out.meta = dict(meta) if isinstance(meta, dict) else {}
    out.meta.update(
        {k: v for k, v in obj.items() if k not in ("messages", "meta") and _is_jsonable_scalar(v)}
    )
    stripped = aliased = False
    for i, m in enumerate(messages):
        where = f"(field messages[{i}]"
        if not isinstance(m, dict):
            out.fail("message_not_object", f"message is not an object {where})")
            continue
        if set(m) - MESSAGE_KEYS:
            stripped = True
        role, content = m.get("role"), m.get("content")
        if isinstance(role, str) and role not in ROLES and role.strip().lower() in ROLE_ALIASES:
            role = ROLE_ALIASES[role.strip().lower()]
            aliased = True
        if role is None:
            out.fail("missing_role", f"message has no role {where}.role)")
        elif role not in ROLES:
            out.fail("unknown_role", f"unknown role {role!r} {where}.role)")
        if content is None:
            out.fail("missing_content", f"message has no content {where}.content)")
        elif not isinstance(content, str):
            content = _text_parts(content)
            if content is None:
                out.fail("missing_content", f"content is not text {where}.content)")
        elif not content.strip():
            out.categories.append("empty_content")
        weight = m.get("weight")
        if weight not in (None, 0, 1):
            out.fail("invalid_weight", f"weight must be 0 or 1, got {weight!r} {where}.weight)")
        msg: dict[str, Any] = {"role": role, "content": content}
        if weight is not None:
            msg["weight"] = weight
        out.messages.append(msg)
    if stripped:
        out.categories.append("unrecognised_keys")
        out.fixes.append("stripped_keys")
    if aliased:
        out.categories.append("role_alias")
        out.fixes.append("role_alias")
    if out.reason:
        return out
    roles = [m["role"] for m in out.messages]
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
        if not out.reason:
            while out.messages and out.messages[-1]["role"] == "user":
                out.messages.pop()
            out.fixes.append("trimmed_trailing_user")
    return out


def _is_jsonable_scalar(v: Any) -> bool:
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


def token_stats(values: Sequence[int] | np.ndarray) -> dict[str, float]:
    """min, max, mean, median, p5, p95 of a list of counts (all 0 for an empty list)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return dict.fromkeys(("min", "max", "mean", "median", "p5", "p95"), 0.0)
    p5, med, p95 = np.percentile(a, [5, 50, 95])
    return {
        "min": float(a.min()),
        "max": float(a.max()),
        "mean": float(a.mean()),
        "median": float(med),
        "p5": float(p5),
        "p95": float(p95),
    }


def openai_estimate(lengths: Sequence[int]) -> tuple[int, int]:
    """(epochs, billed tokens) OpenAI's fine-tuning would use by default for these conversation lengths.

    The cookbook's rule: 3 epochs, raised so epochs * n >= 100 or lowered so epochs * n <= 25,000, and
    every example billed up to 16,385 tokens per epoch. Lengths here come from the model's own tokenizer,
    so for an OpenAI model the figure is an estimate (their tokenizer differs by a few percent).
    """
    n = len(lengths)
    if n == 0:
        return 0, 0
    epochs = OPENAI_TARGET_EPOCHS
    if n * OPENAI_TARGET_EPOCHS < OPENAI_MIN_TARGET_EXAMPLES:
        epochs = min(OPENAI_MAX_DEFAULT_EPOCHS, OPENAI_MIN_TARGET_EXAMPLES // n)
    elif n * OPENAI_TARGET_EPOCHS > OPENAI_MAX_TARGET_EXAMPLES:
        epochs = max(OPENAI_MIN_DEFAULT_EPOCHS, OPENAI_MAX_TARGET_EXAMPLES // n)
    billed_per_epoch = sum(min(OPENAI_MAX_TOKENS_PER_EXAMPLE, n_tok) for n_tok in lengths)
    return epochs, epochs * billed_per_epoch


PREFERENCE_KEYS = ("preferred_output", "non_preferred_output")


def is_preference_record(obj: Any) -> bool:
    """A DPO record in OpenAI's shape: {"input": {"messages": [...]}, "preferred_output": [...],
    "non_preferred_output": [...]}."""
    return isinstance(obj, dict) and any(k in obj for k in PREFERENCE_KEYS)


def check_preference_record(obj: dict[str, Any]) -> Checked:
    """Validate one preference pair with check_record's rules: the prompt followed by each answer must be
    a valid conversation, and each answer exactly one assistant message. messages holds the prompt."""
    out = Checked()
    prompt = obj.get("input")
    messages = prompt.get("messages") if isinstance(prompt, dict) else None
    if not isinstance(messages, list) or not messages:
        return out.fail("missing_messages", "missing or empty prompt (field input.messages)")
    for key in PREFERENCE_KEYS:
        answer = obj.get(key)
        if (
            not isinstance(answer, list)
            or len(answer) != 1
            or not isinstance(answer[0], dict)
            or answer[0].get("role") != "assistant"
        ):
            return out.fail("no_assistant", f"expected a list of one assistant message (field {key})")
        checked = check_record({"messages": [*messages, *answer]})
        out.categories += [c for c in checked.categories if c not in out.categories]
        if checked.reason:
            where = f"field input.messages+{key}"
            return out.fail(checked.reason, checked.detail.replace("field messages", where))
    out.messages = list(messages)
    return out
