"""The openai SDK client for a run, and its errors as chattune's one-line errors.

    client = make_client(cfg.openai)
    with api_errors("creating the job"):
        job = client.fine_tuning.jobs.create(...)

Retries are the SDK's own: 408/409/429/5xx, timeouts and dropped connections are retried
`openai.max_retries` times with exponential back-off (0.5 s doubling to 8 s, with jitter), or after the
delay a Retry-After / retry-after-ms header asks for. Only what is left after that reaches the user.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from chattune.config.hosted import OpenAIConfig
from chattune.errors import ChattuneError

if TYPE_CHECKING:
    from openai import OpenAI

API_KEY_ENV = "OPENAI_API_KEY"


def make_client(cfg: OpenAIConfig) -> OpenAI:
    """An SDK client for cfg's endpoint; the key comes from OPENAI_API_KEY and nowhere else."""
    from openai import OpenAI

    key = os.environ.get(API_KEY_ENV)
    if not key:
        raise ChattuneError(f"{API_KEY_ENV} is not set: export your OpenAI API key to use the openai backend")
    return OpenAI(
        api_key=key,
        # Passed explicitly (None means api.openai.com) so that OPENAI_BASE_URL cannot redirect a run
        # whose config says otherwise.
        base_url=cfg.base_url or "https://api.openai.com/v1",
        organization=cfg.organization,
        project=cfg.project,
        max_retries=cfg.max_retries,
        timeout=cfg.timeout_seconds,
    )


@contextmanager
def api_errors(doing: str) -> Iterator[None]:
    """Re-raise SDK errors as one line: what we were doing, the status, and the API's own message."""
    import openai

    try:
        yield
    except openai.APIStatusError as e:
        raise ChattuneError(f"OpenAI API, {doing}: {e.status_code} {_api_message(e)}{_hint(e)}") from None
    except openai.APITimeoutError:
        raise ChattuneError(f"OpenAI API, {doing}: timed out (raise openai.timeout_seconds?)") from None
    except openai.APIConnectionError as e:
        raise ChattuneError(f"OpenAI API, {doing}: cannot connect ({e.__cause__ or e})") from None


def _api_message(e: object) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            code = f" [{err['code']}]" if err.get("code") else ""
            return f"{err['message']}{code}"
    return str(getattr(e, "message", e))


def _hint(e: object) -> str:
    status = getattr(e, "status_code", None)
    if status == 401:
        return f" (check {API_KEY_ENV})"
    if status == 429:
        return " (still rate-limited after the retries in openai.max_retries)"
    return ""
