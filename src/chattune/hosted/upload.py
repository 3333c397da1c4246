"""Check a data file the way OpenAI's fine-tuning will, then upload it once.

    prepared = prepare_file(Path("data/train.jsonl"), "gpt-4o-mini-2024-07-18")
    record = upload(client, prepared, recorded=None, poll_seconds=2)

Every record goes through `data inspect`'s checks (check_record, or check_preference_record for DPO
pairs). OpenAI rejects a whole file for one bad example, so the first fatal problem stops here with its
file, line and field, before anything is sent. What is uploaded is the checked records re-serialised
(unknown keys stripped, trailing user turns trimmed), so `lines` maps each uploaded example back to its
source line: that is how a job that fails validation is reported against the user's own file.

Uploads are idempotent: the file is named after the SHA-256 of its content. A re-run first reuses the
id recorded in the run directory, then any file of that name and size already on the account (an
upload whose answer was lost to an interruption), and only then uploads. An interrupted upload is sent
again, after looking for it by name (see _create): the Files API takes a file in one request, so there is
no partial file to resume from. (Files over 512 MB need the multi-part Uploads API, which is not used.)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from chattune.data.conversation import check_record
from chattune.data.validate import check_preference_record, is_preference_record
from chattune.errors import ChattuneError, DataError
from chattune.hosted.client import api_errors

if TYPE_CHECKING:
    from openai import OpenAI

# The cookbook's count for chat models: each message costs its content plus 3 tokens of framing, and
# every example 3 more for the reply's priming.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_EXAMPLE = 3
RETRY_BASE_SECONDS, RETRY_MAX_SECONDS = 0.5, 8.0  # the SDK's own back-off for its retries
CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English text, used when tiktoken is not available


@dataclass
class Prepared:
    source: Path
    kind: Literal["supervised", "dpo"]
    content: bytes  # exactly what is uploaded
    lines: list[int]  # source line (or row) of each uploaded example, in order
    tokens: list[int]  # estimated tokens per example
    fixes: Counter[str] = field(default_factory=Counter)
    counter: str = ""  # how tokens were counted
    system_prompt: str | None = None  # the system prompt every example shares, if they share one

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def filename(self) -> str:
        return f"chattune-{self.sha256[:24]}.jsonl"


def prepare_file(path: Path, model: str) -> Prepared:
    """Validate every record of `path` for OpenAI fine-tuning; raise DataError at the first fatal one."""
    from chattune.config.prepare import SourceConfig
    from chattune.data.ingest import iter_source

    count, counter = token_counter(model)
    out: list[bytes] = []
    lines: list[int] = []
    tokens: list[int] = []
    fixes: Counter[str] = Counter()
    kind: Literal["supervised", "dpo"] | None = None
    systems: set[str | None] = set()
    for rec in iter_source(SourceConfig(path=path)):
        line = rec.loc if rec.loc_kind == "line" else None
        if rec.error:
            raise DataError(rec.detail, file=str(path), line=line)
        obj = rec.obj
        this: Literal["supervised", "dpo"] = "dpo" if is_preference_record(obj) else "supervised"
        if kind is not None and this != kind:
            raise DataError(
                "mixes preference pairs and plain conversations; OpenAI takes one kind per file",
                file=str(path),
                line=line,
            )
        kind = this
        # a preference record is a dict (is_preference_record checked)
        checked = (
            check_preference_record(obj) if this == "dpo" and isinstance(obj, dict) else check_record(obj)
        )
        if checked.reason:
            raise DataError(checked.detail, file=str(path), line=line)
        if "empty_content" in checked.categories:
            raise DataError("a message has empty content, which OpenAI rejects", file=str(path), line=line)
        fixes.update(checked.fixes)
        first = checked.messages[0]
        systems.add(first["content"] if first["role"] == "system" else None)
        if this == "dpo":
            assert isinstance(obj, dict)
            record: dict[str, Any] = {
                k: obj[k] for k in ("input", "preferred_output", "non_preferred_output")
            }
            texts = [m["content"] for m in checked.messages] + [
                obj[k][0]["content"] for k in ("preferred_output", "non_preferred_output")
            ]
        else:
            record = {"messages": checked.messages}
            texts = [m["content"] for m in checked.messages]
        out.append(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        lines.append(rec.loc)
        tokens.append(sum(count(t) + TOKENS_PER_MESSAGE for t in texts) + TOKENS_PER_EXAMPLE)
    if not out:
        raise DataError("no examples", file=str(path))
    system = next(iter(systems)) if len(systems) == 1 else None
    return Prepared(path, kind or "supervised", b"".join(out), lines, tokens, fixes, counter, system)


def token_counter(model: str) -> tuple[Callable[[str], int], str]:
    """Exact counts with tiktoken when it is installed and has the model's encoding, else ~4 chars/token."""
    try:
        import tiktoken

        try:
            enc = tiktoken.encoding_for_model(model)
        except KeyError:  # a model newer than this tiktoken: the current chat models' encoding
            enc = tiktoken.get_encoding("o200k_base")
        enc.encode("probe")
        return (lambda s: len(enc.encode(s, disallowed_special=()))), f"tiktoken {enc.name}"
    except Exception:  # not installed, or its encoding cannot be downloaded (offline): estimate
        return (
            lambda s: math.ceil(len(s) / CHARS_PER_TOKEN)
        ), f"estimated at ~{CHARS_PER_TOKEN} characters per token; install tiktoken for exact counts"


def upload(
    client: OpenAI, prepared: Prepared, *, recorded: dict[str, Any] | None, poll_seconds: float
) -> dict[str, Any]:
    """The uploaded file's record {id, filename, bytes, sha256, source}: reused when it is already there."""
    size = len(prepared.content)
    file_id = None
    with api_errors(f"uploading {prepared.source}"):
        if recorded and recorded.get("sha256") == prepared.sha256 and recorded.get("id"):
            file_id = _existing(client, recorded["id"])
        if file_id is None:
            file_id = _find(client, prepared)
        reused = file_id is not None
        if file_id is None:
            file_id = _create(client, prepared)
        obj = client.files.retrieve(file_id)
        while obj.status == "uploaded":  # processed asynchronously on OpenAI's side
            time.sleep(poll_seconds)
            obj = client.files.retrieve(file_id)
    if obj.status == "error":
        detail = obj.status_details or "rejected"
        raise DataError(
            f"OpenAI could not process the file: {map_example_numbers(detail, prepared)}",
            file=str(prepared.source),
        )
    return {
        "id": file_id,
        "filename": prepared.filename,
        "bytes": size,
        "sha256": prepared.sha256,
        "source": str(prepared.source),
        "examples": len(prepared.lines),
        "lines": prepared.lines,
        "reused": reused,
    }


def _find(client: OpenAI, prepared: Prepared) -> str | None:
    """A file with this content's name and size already on the account."""
    return next(
        (
            f.id
            for f in client.files.list(purpose="fine-tune")
            if f.filename == prepared.filename and f.bytes == len(prepared.content) and f.status != "error"
        ),
        None,
    )


def _create(client: OpenAI, prepared: Prepared) -> str:
    """Upload, retrying as the SDK would but looking for the file before each retry.

    The SDK's own retry would re-send a file whose upload landed but whose answer was lost (a 5xx from a
    proxy, a dropped connection), leaving a duplicate on the account; the Files API takes no idempotency
    key. So retries are done here: one request at a time, then a look for the name, then back-off.
    """
    import openai

    attempts = client.max_retries + 1
    once = client.with_options(max_retries=0)
    for attempt in range(attempts):
        try:
            return once.files.create(
                file=(prepared.filename, prepared.content, "application/jsonl"), purpose="fine-tune"
            ).id
        except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError):
            if attempt == attempts - 1:
                raise
            found = _find(client, prepared)
            if found is not None:
                return found
            time.sleep(min(RETRY_BASE_SECONDS * 2**attempt, RETRY_MAX_SECONDS))
    raise AssertionError("unreachable")


def _existing(client: OpenAI, file_id: str) -> str | None:
    import openai

    try:
        obj = client.files.retrieve(file_id)
    except openai.NotFoundError:  # deleted since: upload again
        return None
    return file_id if obj.status != "error" else None


EXAMPLE_NUMBER = re.compile(r"\b(line|example|row)\s+(\d+)", re.IGNORECASE)


def locate(message: str, lines: list[int]) -> int | None:
    """The source line of the first (1-based) example number an API error message names, if any."""
    m = EXAMPLE_NUMBER.search(message)
    n = int(m.group(2)) if m else 0
    return lines[n - 1] if 1 <= n <= len(lines) else None


def map_example_numbers(message: str, prepared: Prepared) -> str:
    line = locate(message, prepared.lines)
    return f"{message} (source line {line})" if line is not None else message


def validation_error(message: str, file: dict[str, Any] | None) -> ChattuneError:
    """A job's file-validation failure, pointed at the user's file and line (from the uploaded file's
    record in the run directory) where the message allows."""
    if not file:
        return ChattuneError(message)
    return DataError(message, file=file["source"], line=locate(message, file.get("lines", [])))
