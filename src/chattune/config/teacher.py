"""The teacher model's settings: a local transformers model or an OpenAI-compatible endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from chattune.config.model import EMBEDDED_MODEL
from chattune.config.section import Section


class TeacherConfig(Section):
    kind: Literal["local", "openai"] = Field(
        "local",
        description="local: a transformers model run in-process; openai: any OpenAI-compatible endpoint.",
    )
    model: str = Field(
        EMBEDDED_MODEL,
        description="local: hub id, model folder, .gguf or 'embedded' (offline SmolLM2-135M); openai: the model name the server expects.",
    )
    base_url: str | None = Field(
        None,
        description="openai: endpoint base URL, e.g. http://localhost:8000/v1 (vLLM) or http://localhost:11434/v1 (Ollama).",
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="openai: environment variable holding the API key (local servers usually need none).",
    )
    temperature: float = Field(0.7, ge=0.0, description="Sampling temperature; 0 = greedy.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling threshold.")
    max_new_tokens: int = Field(256, ge=1, description="Most tokens per completion.")
    max_retries: int = Field(
        3,
        ge=0,
        description="openai: retries on rate-limit, timeout and server errors (exponential back-off).",
    )
    requests_per_minute: float | None = Field(
        None, gt=0, description="openai: most requests per minute; null = no limit."
    )
    cache_dir: Path | None = Field(
        None, description="Completion cache; default <cache_root>/teacher (~/.cache/chattune/teacher)."
    )
