"""Figures about a data set the way OpenAI's data-prep cookbook gives them, and preference pairs.

    stats = token_stats(tokens)      # min/max/mean/median/p5/p95
    epochs, billed = openai_estimate(lengths)
    checked = check_preference_record(obj)

A record's structure is checked by `conversation.check_record`, the one validator: its categories follow
the cookbook (not an object, missing messages, message missing role/content, unrecognised keys, unknown
role, empty content, no assistant message) plus a few it leaves to the API (ending on a user turn,
consecutive same roles, system not first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from chattune.data.conversation import Checked, Conversation, check_record

# OpenAI's defaults from the cookbook: 3 epochs, scaled so that epochs * examples lands in [100, 25000].
OPENAI_MAX_TOKENS_PER_EXAMPLE = 16385
OPENAI_TARGET_EPOCHS = 3
OPENAI_MIN_TARGET_EXAMPLES = 100
OPENAI_MAX_TARGET_EXAMPLES = 25000
OPENAI_MIN_DEFAULT_EPOCHS = 1
OPENAI_MAX_DEFAULT_EPOCHS = 25


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
        return out.fail("missing_messages", "missing or empty prompt", "input.messages")
    for key in PREFERENCE_KEYS:
        answer = obj.get(key)
        if (
            not isinstance(answer, list)
            or len(answer) != 1
            or not isinstance(answer[0], dict)
            or answer[0].get("role") != "assistant"
        ):
            return out.fail("no_assistant", "expected a list of one assistant message", key)
        checked = check_record({"messages": [*messages, *answer]})
        out.categories += [c for c in checked.categories if c not in out.categories]
        if checked.reason:
            field = (checked.field or "").replace("messages", f"input.messages+{key}", 1) or None
            return out.fail(checked.reason, checked.message, field)
        assert checked.conversation is not None
        out.conversation = out.conversation or Conversation(messages=checked.conversation.messages[:-1])
    return out
