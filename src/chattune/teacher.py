"""A teacher model that writes text for other stages: scenario drafts, paraphrases, judgements.

    teacher = Teacher(TeacherConfig())                                   # the embedded model, offline
    teacher = Teacher(TeacherConfig(kind="openai", model="llama3", base_url="http://localhost:11434/v1"))
    reply = teacher.complete([{"role": "user", "content": "Say hi"}], seed=1)

Every completion is cached on disk under a hash of the model, the messages and the sampling settings,
so running a generator twice pays for each request once. A local model is loaded lazily, once, and
prompted through its own chat template. An OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, ...) is
called through the official `openai` client, which retries rate-limit, timeout and server errors with
exponential back-off; `requests_per_minute` spaces requests out on top of that.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chattune.config import TeacherConfig
from chattune.errors import ChattuneError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class Teacher:
    """Completes chat messages with a local or remote model; every completion is cached on disk."""

    def __init__(self, cfg: TeacherConfig):
        self.cfg = cfg
        if cfg.cache_dir is not None:
            self.cache_dir = Path(cfg.cache_dir)
        else:
            from chattune.model import cache_root

            self.cache_dir = cache_root() / "teacher"
        self.requests = 0  # completions actually generated (not served from the cache)
        self.cache_hits = 0
        self._local: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None
        self._client: Any = None
        self._lock = threading.Lock()
        self._next_request_at = 0.0

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
        seed: int | None = None,
    ) -> str:
        """The teacher's reply to `messages` (role/content dicts), from the cache when it was asked before."""
        temperature = self.cfg.temperature if temperature is None else temperature
        max_new_tokens = self.cfg.max_new_tokens if max_new_tokens is None else max_new_tokens
        settings: dict[str, Any] = {
            "temperature": temperature,
            "top_p": self.cfg.top_p,
            "max_new_tokens": max_new_tokens,
            "seed": seed,
        }
        key = self._cache_key(messages, settings)
        path = self.cache_dir / key[:2] / f"{key}.json"
        if path.is_file():
            try:
                cached = json.loads(path.read_text(encoding="utf-8"))["reply"]
            except (json.JSONDecodeError, KeyError, TypeError):
                cached = None  # a torn or foreign file: regenerate and overwrite it
            if isinstance(cached, str):
                self.cache_hits += 1
                return cached
        complete = self._complete_local if self.cfg.kind == "local" else self._complete_openai
        reply = complete(
            messages, temperature=temperature, top_p=self.cfg.top_p, max_new_tokens=max_new_tokens, seed=seed
        )
        self.requests += 1
        _write_atomic(
            path,
            json.dumps({"request": {"messages": messages, **settings}, "reply": reply}, ensure_ascii=False),
        )
        return reply

    # ------------------------------------------------------------------------------------------------

    def _cache_key(self, messages: list[dict[str, str]], settings: dict[str, Any]) -> str:
        ident = {"kind": self.cfg.kind, "model": self.cfg.model, "base_url": self.cfg.base_url}
        blob = json.dumps({**ident, "messages": messages, **settings}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _complete_local(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        seed: int | None,
    ) -> str:
        from chattune.generate import GenerationSettings, generate_reply

        model, tokenizer = self._load_local()
        settings = GenerationSettings(
            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed
        )
        return generate_reply(model, tokenizer, messages, settings).text

    def _load_local(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        if self._local is None:
            from chattune.model import load_for_inference

            model, tokenizer, _ = load_for_inference(self.cfg.model)  # a name, model folder or run
            self._local = (model, tokenizer)
        return self._local

    def _complete_openai(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        seed: int | None,
    ) -> str:
        import openai

        if self._client is None:
            api_key = os.environ.get(self.cfg.api_key_env)
            if not api_key:
                if self.cfg.base_url is None:
                    raise ChattuneError(
                        f"teacher.kind=openai needs an API key in ${self.cfg.api_key_env} (or set teacher.base_url)"
                    )
                api_key = "not-needed"  # vLLM, Ollama and friends accept any key
            self._client = openai.OpenAI(
                base_url=self.cfg.base_url, api_key=api_key, max_retries=self.cfg.max_retries
            )
        self._wait_for_rate_limit()
        kwargs: dict[str, Any] = {"temperature": temperature, "top_p": top_p, "max_tokens": max_new_tokens}
        if seed is not None:
            kwargs["seed"] = seed
        try:
            response = self._client.chat.completions.create(model=self.cfg.model, messages=messages, **kwargs)
        except openai.OpenAIError as e:
            where = self.cfg.base_url or "api.openai.com"
            raise ChattuneError(
                f"teacher request to {where} (model {self.cfg.model}) failed after {self.cfg.max_retries} retries: {e}"
            ) from None
        content = response.choices[0].message.content if response.choices else None
        return (content or "").strip()

    def _wait_for_rate_limit(self) -> None:
        """Space requests at least 60/requests_per_minute seconds apart (thread-safe)."""
        if not self.cfg.requests_per_minute:
            return
        interval = 60.0 / self.cfg.requests_per_minute
        with self._lock:
            now = time.monotonic()
            wait = self._next_request_at - now
            self._next_request_at = max(now, self._next_request_at) + interval
        if wait > 0:
            time.sleep(wait)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
