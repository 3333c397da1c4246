"""`chattune data inspect FILE`: validation and statistics of one file, changing nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chattune.data import clean
from chattune.data.conversation import Conversation, check_record
from chattune.data.ingest import iter_source
from chattune.data.parallel import parallel_map_batches
from chattune.data.prepare.stages import Measurer
from chattune.data.results import Inspection
from chattune.data.validate import openai_estimate, token_stats

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def inspect_file(path: Path, tokenizer: PreTrainedTokenizerBase, *, max_length: int) -> Inspection:
    """Validation and statistics of one file, changing nothing (the lenient reader, the strict checks)."""
    from chattune.config.prepare import SourceConfig

    categories: Counter[str] = Counter()
    first_errors: dict[str, str] = {}
    conversations: list[Conversation] = []
    n = 0
    reason: str | None  # the record's fatal problem, if any
    for rec in iter_source(SourceConfig(path=path)):
        n += 1
        if rec.error:
            found, reason, detail = [rec.error], rec.error, rec.detail
        else:
            checked = check_record(rec.obj)
            found, reason, detail = checked.categories, checked.reason, checked.detail
            if not reason and checked.conversation is not None:
                conversations.append(checked.conversation)
        found = rec.repairs + found
        categories.update(found)
        for cat in found:
            first_errors.setdefault(
                cat, f"{rec.loc_kind} {rec.loc}: {detail if cat == reason else cat.replace('_', ' ')}"
            )
    # Empty turns would fail rendering in the same way training fails; keep them out of the token figures.
    conversations = [
        c for c in conversations if not any(clean.is_empty(m) for m in c.messages if m.role != "system")
    ]
    measured = parallel_map_batches(Measurer(tokenizer), conversations)
    ok = [
        (c, tokens, trained)
        for c, (tokens, trained, problem) in zip(conversations, measured, strict=True)
        if not problem
    ]
    stats = conversation_stats([c for c, _, _ in ok], [t for _, t, _ in ok], max_length)
    epochs, billed = openai_estimate([t for _, t, _ in ok])
    stats["openai"] = {"epochs": epochs, "billed_tokens": billed}
    return Inspection(
        path,
        n,
        len(conversations),
        categories,
        first_errors,
        stats,
        len(conversations) - len(ok),
        token_stats([trained for _, _, trained in ok]),
    )


def conversation_stats(
    conversations: list[Conversation], tokens: list[int], max_length: int
) -> dict[str, Any]:
    roles = [{m.role for m in c.messages} for c in conversations]
    return {
        "messages_per_conversation": token_stats([len(c.messages) for c in conversations]),
        "tokens_per_conversation": token_stats(tokens),
        "over_max_length": sum(t > max_length for t in tokens),
        "max_length": max_length,
        "missing_system": sum("system" not in r for r in roles),
        "missing_user": sum("user" not in r for r in roles),
    }
