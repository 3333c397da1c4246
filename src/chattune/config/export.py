"""What `chattune export` writes: the format, the weight types, where."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from chattune.config.section import Section

Quant = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k_m"]
HF_QUANTS = ("f32", "f16", "bf16")


class ExportConfig(Section):
    format: Literal["hf", "gguf", "ollama"] = Field(
        "hf",
        description="hf: safetensors folder for transformers; gguf: one .gguf per quant for llama.cpp; "
        "ollama: a GGUF plus a Modelfile for `ollama create`.",
    )
    quants: list[Quant] = Field(
        default_factory=list,
        description="Weight types. hf: f32 (default), f16, bf16. gguf/ollama: f16 (default), bf16, q8_0, "
        "q4_0, q4_1 (written by the gguf package), q4_k_m (llama.cpp's quantiser: needs llama-cpp-python). "
        "ollama takes one.",
    )
    out: Path | None = Field(None, description="Output folder; defaults to <run>/export/<format>.")

    @model_validator(mode="after")
    def _quants_fit_format(self) -> ExportConfig:
        if self.format == "hf":
            bad = [q for q in self.quants if q not in HF_QUANTS]
            if bad or len(self.quants) > 1:
                raise ValueError(
                    f"--format hf takes one of {', '.join(HF_QUANTS)} (got {', '.join(self.quants)})"
                )
        elif "f32" in self.quants:
            raise ValueError(
                "f32 GGUF is not offered: use f16 (lossless for bf16/fp16-trained weights) or bf16"
            )
        if self.format == "ollama" and len(self.quants) > 1:
            raise ValueError("--format ollama takes one --quant (the Modelfile points at one GGUF)")
        return self

    def resolved_quants(self) -> list[str]:
        return list(self.quants) or (["f32"] if self.format == "hf" else ["f16"])
