"""Read a prepared data set back: which records were kept, fixed or dropped, and what changed in each.

    entries = ledger(Path("data/prepared"))                  # one dict per input record, with its index
    view = record_view(Path("data/prepared"), 17)            # as it was, as it came out, and the diff

`data prepare` writes ledger.jsonl (one line per input record, in input order), quarantine.jsonl (the raw
dropped records) and train/val.jsonl (the kept ones, at the ledger's `output_line`). A record "as it was"
is read back from its source file at the ledger's line (or row index), so nothing is stored twice.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Any


def ledger(out_dir: Path) -> list[dict[str, Any]]:
    path = out_dir / "ledger.jsonl"
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as fh:
        return [{"index": i, **json.loads(ln)} for i, ln in enumerate(fh) if ln.strip()]


def facets(entries: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts per source, status, drop reason and fix kind: the filters a browser offers."""
    return {
        "source": dict(Counter(e.get("source", "?") for e in entries)),
        "status": dict(Counter(e.get("status", "?") for e in entries)),
        "reason": dict(Counter(e["reason"] for e in entries if e.get("reason"))),
        "fix": dict(Counter(f.split(":")[0] for e in entries for f in e.get("fixes", []))),
    }


def select(entries: list[dict[str, Any]], **filters: str | None) -> list[dict[str, Any]]:
    """Entries matching every given filter (source, status, reason, fix); None or '' means any."""
    out = entries
    for key, want in filters.items():
        if not want:
            continue
        if key == "fix":
            out = [e for e in out if any(f.split(":")[0] == want for f in e.get("fixes", []))]
        else:
            out = [e for e in out if str(e.get(key)) == want]
    return out


def record_view(out_dir: Path, index: int) -> dict[str, Any]:
    """Ledger entry `index`: the record as read from its source, as written out, and a unified diff."""
    entries = ledger(out_dir)
    if not 0 <= index < len(entries):
        raise IndexError(f"{out_dir / 'ledger.jsonl'}: no record {index} ({len(entries)} records)")
    entry = entries[index]
    before = _source_record(entry)
    after = None
    if entry.get("status") in ("kept", "fixed"):
        after = _line(out_dir / f"{entry['split']}.jsonl", int(entry["output_line"]))
    if before is None and entry.get("status") == "dropped":
        before = _quarantined(out_dir, entry)
    a, b = _pretty(before), _pretty(after)
    diff = list(
        difflib.unified_diff(a.splitlines(), b.splitlines(), "as it was", "as it came out", lineterm="")
    )
    return {"entry": entry, "before": before, "after": after, "diff": diff}


def _source_record(entry: dict[str, Any]) -> Any:
    path = Path(entry.get("file", ""))
    if not path.is_file():
        return None
    if "line" in entry and path.suffix in (".jsonl", ".ndjson"):
        text = _line(path, int(entry["line"]))
        return text
    if "index" in entry and path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return data[int(entry["index"])] if isinstance(data, list) else None
        except (json.JSONDecodeError, IndexError, ValueError):
            return None
    return None


def _line(path: Path, line: int) -> Any:
    """Line `line` (1-based) of a JSONL file, parsed when it is JSON."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as fh:
        text = next(islice(fh, line - 1, line), None)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.rstrip("\n")


def _quarantined(out_dir: Path, entry: dict[str, Any]) -> Any:
    path = out_dir / "quarantine.jsonl"
    if not path.is_file():
        return None
    key = {k: entry.get(k) for k in ("source", "file", "line", "index") if k in entry}
    with path.open(encoding="utf-8") as fh:
        for ln in fh:
            q = json.loads(ln)
            if all(q.get(k) == v for k, v in key.items()):
                return q.get("raw")
    return None


def _pretty(obj: Any) -> str:
    if obj is None:
        return ""
    if isinstance(obj, str):
        return obj
    return json.dumps(obj, indent=2, ensure_ascii=False)
