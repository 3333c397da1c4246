"""Read any common conversation format, record by record, into OpenAI-shaped dicts.

    for rec in iter_source(SourceConfig(path="raw/chats.jsonl")):
        rec.obj      # {"messages": [{"role": ..., "content": ...}], ...} or None
        rec.error    # "invalid_json" / "invalid_utf8" / ... when the record could not be decoded

Formats: OpenAI messages JSONL, ShareGPT (JSON or JSONL, `from`/`value`), Alpaca (instruction/input/
output), CSV/TSV with a column mapping, Parquet, and `datasets.save_to_disk` folders. Lines are parsed
here rather than with `datasets.load_dataset("json")`, which fails a whole file on one bad line: a bad
record becomes a RawRecord with an error and the file goes on. Structural checks (roles, order) are the
job of `validate.py`; this module only changes the shape.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chattune.config.prepare import ColumnMap, SourceConfig
from chattune.data.conversation import ROLE_ALIASES
from chattune.errors import DataError

# ShareGPT speakers and the role each means; anything else is passed through and counted as an
# unknown role by validation.
SHAREGPT_ROLES = ROLE_ALIASES
EXPECTED = "OpenAI messages, ShareGPT or Alpaca JSON/JSONL, CSV/TSV, Parquet, or a datasets folder"


@dataclass(slots=True)
class RawRecord:
    source: str  # the source's tag
    file: str
    loc: int  # 1-based line for text files, 0-based row index for tables and JSON arrays
    loc_kind: str  # "line" or "index"
    raw: Any  # what was read, for the quarantine file
    obj: dict[str, Any] | None = None  # OpenAI-shaped record, or None when it could not be decoded
    error: str | None = None  # validation category when obj is None and the record is not even JSON
    detail: str = ""
    repairs: list[str] = field(default_factory=list)  # fixes made while reading (ledger names)

    @property
    def where(self) -> dict[str, Any]:
        return {"source": self.source, "file": self.file, self.loc_kind: self.loc}


def detect_format(path: Path) -> str:
    """The container format from the path: jsonl, json, csv, tsv, parquet or hf."""
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            return "hf"
        raise DataError(f"folder is not a datasets.save_to_disk folder; expected {EXPECTED}", file=str(path))
    suffix = path.suffix.lower()
    known = {
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".json": "json",
        ".csv": "csv",
        ".tsv": "tsv",
        ".parquet": "parquet",
    }
    if suffix not in known:
        raise DataError(f"unknown file type {suffix or '(none)'!r}; expected {EXPECTED}", file=str(path))
    return known[suffix]


def iter_source(src: SourceConfig) -> Iterator[RawRecord]:
    """Every record of one source, in file order, each either converted or carrying its error."""
    path = Path(src.path)
    if not path.exists():
        raise DataError("no such file or folder", file=str(path))
    container = detect_format(path)
    fmt = src.format
    if fmt in ("csv", "tsv", "parquet", "hf"):
        container = fmt
    if container in ("csv", "tsv"):
        yield from _iter_csv(path, src, delimiter="\t" if container == "tsv" else ",")
    elif container == "parquet":
        yield from _iter_rows(path, src, _parquet_rows(path))
    elif container == "hf":
        yield from _iter_rows(path, src, _hf_rows(path, src.hf_split))
    elif container == "json" and _starts_with(path, b"[{"):
        yield from _iter_json_document(path, src)
    else:  # JSONL, or a .json file holding one object per line
        yield from _iter_jsonl(path, src)


def _starts_with(path: Path, chars: bytes) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] in [bytes([c]) for c in chars]


def _iter_jsonl(path: Path, src: SourceConfig) -> Iterator[RawRecord]:
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            rec = RawRecord(src.name, str(path), lineno, "line", None)
            try:
                text = line.decode("utf-8")
                damaged = False
            except UnicodeDecodeError:
                # Damaged bytes become lone surrogates; they are removed from the decoded strings below.
                text, damaged = line.decode("utf-8", errors="surrogateescape"), True
            rec.raw = _printable(text.rstrip("\n")) if damaged else text.rstrip("\n")
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                if damaged:
                    rec.error, rec.detail = "invalid_utf8", "invalid UTF-8 where the JSON syntax should be"
                else:
                    rec.error, rec.detail = "invalid_json", f"invalid JSON: {e.msg} (column {e.colno})"
                yield rec
                continue
            if damaged and (value := _recover(rec, value)) is None:
                yield rec
                continue
            _convert(rec, value, src)
            yield rec


_SURROGATES = re.compile("[\udc80-\udcff]+")
# A record keeps its text when its undecodable bytes are at most this share of its decoded characters;
# beyond that it is mostly binary damage and what is left would not read as the original.
MAX_DAMAGED_SHARE = 0.25


def _recover(rec: RawRecord, value: Any) -> Any:
    """The value with undecodable bytes (surrogate-escaped) removed from its strings and the repair
    recorded; None (and rec.error set) when too little text is left."""
    removed = 0
    chars = 0

    def strip(v: Any) -> Any:
        nonlocal removed, chars
        if isinstance(v, str):
            clean, n = _SURROGATES.subn(lambda m: "", v)
            if n:
                removed += len(v) - len(clean)
            chars += len(clean)
            return clean
        if isinstance(v, list):
            return [strip(x) for x in v]
        if isinstance(v, dict):
            return {strip(k): strip(x) for k, x in v.items()}
        return v

    value = strip(value)
    if not removed:
        return value
    rec.raw = _printable(rec.raw)
    if removed > MAX_DAMAGED_SHARE * chars:
        rec.error = "invalid_utf8"
        rec.detail = f"{removed} undecodable bytes against {chars} readable characters: too little text left"
        return None
    rec.repairs.append("utf8_repaired")
    return value


def _iter_json_document(path: Path, src: SourceConfig) -> Iterator[RawRecord]:
    # A JSON array has no lines to resume from, so one syntax error does fail the file (with its position).
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig", errors="surrogateescape"))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", file=str(path), line=e.lineno) from None
    for i, value in enumerate(data):
        rec = RawRecord(src.name, str(path), i, "index", value)
        if (value := _recover(rec, value)) is not None:
            _convert(rec, value, src)
        yield rec


def _iter_csv(path: Path, src: SourceConfig, delimiter: str) -> Iterator[RawRecord]:
    cols = src.columns or ColumnMap()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    # utf-8-sig drops a BOM; surrogateescape lets one bad row be caught without failing the file.
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        header = reader.fieldnames or []
        missing = [c for c in (cols.prompt, cols.response, cols.system) if c and c not in header]
        if missing:
            raise DataError(
                f"column {missing[0]!r} not in the header ({', '.join(header)}); set columns: in the source",
                file=str(path),
                line=1,
                field=missing[0],
            )
        start = reader.line_num + 1
        for row in reader:
            rec = RawRecord(src.name, str(path), start, "line", None)
            start = reader.line_num + 1
            if any(isinstance(v, str) and _has_surrogates(v) for v in row.values()):
                rec.raw = {k: _printable(v) for k, v in row.items()}
                if (row := _recover(rec, row)) is None:
                    yield rec
                    continue
            if None in row:
                rec.raw = row
                rec.error, rec.detail = (
                    "malformed_row",
                    f"{len(header) + len(row[None])} fields, header has {len(header)}",
                )
            else:
                rec.raw = rec.raw or row
                rec.obj = _from_columns(row, cols)
            yield rec


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _printable(value: Any) -> Any:
    """The value with undecodable bytes written as \\xNN escapes, for the quarantine file."""
    if isinstance(value, str):
        return value.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")
    if isinstance(value, list):
        return [_printable(x) for x in value]
    if isinstance(value, dict):
        return {_printable(k): _printable(x) for k, x in value.items()}
    return value


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise DataError(f"not a readable Parquet file ({e})", file=str(path)) from None
    for batch in pf.iter_batches(batch_size=1024):
        yield from batch.to_pylist()


def _hf_rows(path: Path, split: str | None) -> Iterator[dict[str, Any]]:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(path))
    if isinstance(ds, DatasetDict):
        name = split or "train"
        if name not in ds:
            raise DataError(
                f"no split {name!r} (has {', '.join(ds)}); set hf_split", file=str(path), field="hf_split"
            )
        ds = ds[name]
    yield from ds


def _iter_rows(path: Path, src: SourceConfig, rows: Iterator[dict[str, Any]]) -> Iterator[RawRecord]:
    for i, row in enumerate(rows):
        rec = RawRecord(src.name, str(path), i, "index", row)
        if src.columns is not None:
            rec.obj = _from_columns(row, src.columns)
        else:
            _convert(rec, row, src)
        yield rec


def _from_columns(row: dict[str, Any], cols: ColumnMap) -> dict[str, Any]:
    messages = []
    if cols.system and row.get(cols.system):
        messages.append({"role": "system", "content": row[cols.system]})
    messages.append({"role": "user", "content": row.get(cols.prompt)})
    messages.append({"role": "assistant", "content": row.get(cols.response)})
    return {"messages": messages}


def _convert(rec: RawRecord, value: Any, src: SourceConfig) -> None:
    """Set rec.obj to the OpenAI shape of a decoded JSON value (format from config or from its keys)."""
    if not isinstance(value, dict):
        rec.obj = value  # validation counts it as not_an_object
        return
    fmt = src.format if src.format in ("openai", "sharegpt", "alpaca") else _record_format(value)
    if fmt == "sharegpt":
        rec.obj = _from_sharegpt(value)
    elif fmt == "alpaca":
        rec.obj = _from_alpaca(value)
    elif fmt == "columns":
        rec.obj = _from_columns(value, ColumnMap())
    else:
        rec.obj = value


def _record_format(obj: dict[str, Any]) -> str:
    if obj.get("messages") is not None:  # tables give every row every column, None where unset
        return "openai"
    if isinstance(obj.get("conversations") or obj.get("conversation"), list):
        return "sharegpt"
    if obj.get("instruction") is not None and "output" in obj:
        return "alpaca"
    if obj.get("prompt") is not None and "response" in obj:
        return "columns"
    return "openai"  # validation reports the missing messages


def _from_sharegpt(obj: dict[str, Any]) -> dict[str, Any]:
    turns = obj.get("conversations", obj.get("conversation"))
    rest = {k: v for k, v in obj.items() if k not in ("conversations", "conversation", "system")}
    if not isinstance(turns, list):
        return {**rest, "messages": turns}
    messages: list[Any] = []
    if isinstance(obj.get("system"), str) and obj["system"].strip():
        messages.append({"role": "system", "content": obj["system"]})
    for turn in turns:
        if not isinstance(turn, dict):
            messages.append(turn)
            continue
        speaker = turn.get("from", turn.get("role"))
        role = SHAREGPT_ROLES.get(str(speaker).lower(), speaker) if speaker is not None else None
        msg = {k: v for k, v in turn.items() if k not in ("from", "role", "value", "content")}
        if role is not None:
            msg["role"] = role
        if "value" in turn or "content" in turn:
            msg["content"] = turn.get("value", turn.get("content"))
        messages.append(msg)
    return {"messages": messages, "meta": {"id": rest["id"]}} if "id" in rest else {"messages": messages}


def _from_alpaca(obj: dict[str, Any]) -> dict[str, Any]:
    prompt = obj.get("instruction")
    extra = obj.get("input")
    if isinstance(prompt, str) and isinstance(extra, str) and extra.strip():
        prompt = f"{prompt}\n\n{extra}"
    messages = []
    if isinstance(obj.get("system"), str) and obj["system"].strip():
        messages.append({"role": "system", "content": obj["system"]})
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": obj.get("output")}]
    return {"messages": messages}
