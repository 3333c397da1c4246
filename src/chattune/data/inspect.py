"""`chattune data inspect FILE`: validation and statistics of one file, changing nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from chattune.data import clean
from chattune.data.ingest import iter_source
from chattune.data.prepare import Item, conversation_stats, measure_tokens
from chattune.data.results import Inspection
from chattune.data.validate import check_record, openai_estimate, token_stats

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def inspect_file(path: Path, tokenizer: PreTrainedTokenizerBase, *, max_length: int) -> Inspection:
    """Validation and statistics of one file, changing nothing (the lenient reader, the strict checks)."""
    from chattune.config.prepare import SourceConfig

    categories: Counter[str] = Counter()
    first_errors: dict[str, str] = {}
    items: list[Item] = []
    n = 0
    reason: str | None  # the record's fatal problem, if any
    for rec in iter_source(SourceConfig(path=path)):
        n += 1
        if rec.error:
            found, reason, detail = [rec.error], rec.error, rec.detail
        else:
            checked = check_record(rec.obj)
            found, reason, detail = checked.categories, checked.reason, checked.detail
            if not reason:
                items.append(Item(rec, checked.messages))
        found = rec.repairs + found
        categories.update(found)
        for cat in found:
            first_errors.setdefault(
                cat, f"{rec.loc_kind} {rec.loc}: {detail if cat == reason else cat.replace('_', ' ')}"
            )
    # Empty turns would fail rendering in the same way training fails; keep them out of the token figures.
    items = [it for it in items if not any(clean.is_empty(m) for m in it.messages if m["role"] != "system")]
    measure_tokens(items, tokenizer, check=True)
    failures = sum(not it.alive for it in items)
    ok = [it for it in items if it.alive]
    stats = conversation_stats([it.messages for it in ok], [it.tokens for it in ok], max_length)
    epochs, billed = openai_estimate([it.tokens for it in ok])
    stats["openai"] = {"epochs": epochs, "billed_tokens": billed}
    return Inspection(
        path,
        n,
        len(items),
        categories,
        first_errors,
        stats,
        failures,
        token_stats([it.trained_tokens for it in ok]),
    )
