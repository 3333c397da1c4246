"""`chattune export`: a run, checkpoint or model folder -> files other tools load.

    export("runs/quickstart", ExportConfig(format="gguf", quants=["f16", "q8_0"]))   # -> ExportResult

load (merging a LoRA adapter; a QLoRA one into its dequantised base) -> write the format
(hf safetensors, GGUF, or GGUF + Ollama Modelfile) -> write the model card README.md.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from chattune.config import RunConfig
from chattune.config.export import ExportConfig
from chattune.errors import ChattuneError
from chattune.export.card import model_card

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class ExportResult:
    out_dir: Path
    files: list[Path] = field(default_factory=list)


def export(source: str | Path, cfg: ExportConfig, console: Console | None = None) -> ExportResult:
    """Export the model at `source` (a run directory, a checkpoint, or a transformers model folder)."""
    from chattune.export.gguf_file import end_of_turn_tokens, write_gguf
    from chattune.model import find_model_dir

    console = console or Console()
    source = Path(source)
    if not source.is_dir():
        raise ChattuneError(f"{source}: not a folder (export takes a run, a checkpoint or a model folder)")
    model_dir, run_cfg = find_model_dir(source)
    run_dir = source if (source / "final").is_dir() or (source / "checkpoints").is_dir() else None
    out = cfg.out or (run_dir / "export" / cfg.format if run_dir else None)
    if out is None:
        raise ChattuneError(f"{source} is not a run directory: pass --out DIR")
    if out.resolve() == model_dir.resolve():
        raise ChattuneError(f"--out {out} is the model folder itself; choose another folder")
    quants = cfg.resolved_quants()
    name = run_dir.name if run_dir else model_dir.name

    console.print(f"loading [bold]{model_dir}[/]")
    model, tokenizer = load_merged(model_dir, run_cfg, console)
    system_prompt = _trained_system_prompt(model_dir)
    stops = end_of_turn_tokens(tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    if cfg.format == "hf":
        written += write_hf(model, tokenizer, out, quant=quants[0], stops=stops)
    else:
        for quant in quants:
            path = out / f"{name}-{quant}.gguf"
            console.print(f"writing [bold]{path}[/]")
            if quant == "q4_k_m":
                written.append(_llama_cpp_quantize(model, tokenizer, path, name=name))
            else:
                written.append(write_gguf(model, tokenizer, path, quant=quant, name=name))
        if cfg.format == "ollama":
            from chattune.export.ollama import modelfile

            mf = out / "Modelfile"
            mf.write_text(
                modelfile(tokenizer, written[0].name, system_prompt=system_prompt, stops=stops),
                encoding="utf-8",
            )
            written.append(mf)

    card = out / "README.md"
    card.write_text(
        model_card(
            name=name,
            run_cfg=run_cfg,
            run_dir=run_dir,
            system_prompt=system_prompt,
            files=sorted(p.name for p in out.iterdir() if p.is_file() and p.name != "README.md"),
            hardware=_hardware(),
        ),
        encoding="utf-8",
    )
    written.append(card)
    console.print(f"[green]exported[/] {len(written)} files to {out}")
    return ExportResult(out, written)


def load_merged(
    model_dir: Path, run_cfg: RunConfig | None, console: Console
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The full model in float32: a model folder as is; an adapter merged into its base. A QLoRA
    adapter was trained against the NF4-quantised base, so it is merged into that base dequantised
    (what it learnt to correct), not into the original full-precision weights."""
    from chattune.config import ModelConfig
    from chattune.model import ModelSource, load_model, load_tokenizer

    model_cfg = run_cfg.model if run_cfg else ModelConfig()
    has_tokenizer = (model_dir / "tokenizer_config.json").is_file()
    tokenizer = load_tokenizer(
        model_cfg.model_copy(update={"name": str(model_dir)}) if has_tokenizer else model_cfg,
        ModelSource(str(model_dir)) if has_tokenizer else None,
    )
    if (model_dir / "config.json").is_file():
        model = load_model(model_cfg.model_copy(update={"name": str(model_dir)}), ModelSource(str(model_dir)))
        return model.eval(), tokenizer
    if run_cfg is None:
        raise ChattuneError(
            f"{model_dir}: an adapter without chattune.yaml beside it (its base model is unknown)"
        )
    from peft import PeftModel

    if run_cfg.train.method == "qlora":
        import torch

        # needs CUDA + bitsandbytes (load_model says so otherwise); not exercised on CPU-only machines
        base = load_model(model_cfg, quantize_4bit=True, device_map={"": 0})
        base = base.dequantize(dtype=torch.float32)
        console.print("merging the QLoRA adapter into the dequantised 4-bit base")
    else:
        base = load_model(model_cfg)
        console.print("merging the LoRA adapter into its base")
    merged = PeftModel.from_pretrained(base, str(model_dir)).merge_and_unload()
    return merged.to("cpu").float().eval(), tokenizer


def write_hf(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: Path, *, quant: str, stops: list[str]
) -> list[Path]:
    """safetensors + tokenizer (chat template included) + generation_config.json that stops at the
    end of a turn, so `pipeline("text-generation")` answers one turn and stops."""
    import torch

    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[quant]
    # cast in place (PreTrainedModel.to returns the model itself), called as an nn.Module: transformers
    # decorates PreTrainedModel.to with functools.wraps, and mypy then cannot bind its self
    module: torch.nn.Module = model
    module.to(dtype)
    model.config.dtype = dtype
    gen = model.generation_config
    ids = tokenizer.convert_tokens_to_ids(stops)  # a list for a list of tokens
    gen.eos_token_id = [int(i) for i in (ids if isinstance(ids, list) else [ids])]
    gen.pad_token_id = tokenizer.pad_token_id
    for f in ("model.safetensors", "model.safetensors.index.json"):
        (out / f).unlink(missing_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return sorted(p for p in out.iterdir() if p.is_file())


def _trained_system_prompt(model_dir: Path) -> str | None:
    for folder in (model_dir, model_dir.parent):  # final/ or final/adapter
        f = folder / "chat_defaults.json"
        if f.is_file():
            prompt = json.loads(f.read_text(encoding="utf-8")).get("system_prompt")
            return str(prompt) if prompt else None
    return None


def _hardware() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()} {platform.processor() or ''} ({gpu})".replace("  ", " ")


def _llama_cpp_quantize(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path, *, name: str
) -> Path:
    """q4_k_m through llama.cpp's own quantiser (the gguf package only dequantises K-quants):
    write f16, then let llama.cpp choose per-tensor types as its Q4_K_M recipe does."""
    import ctypes

    from chattune.export.gguf_file import write_gguf

    try:
        import llama_cpp
    except ImportError as e:
        raise ChattuneError(
            "--quant q4_k_m uses llama.cpp's quantiser: pip install 'chattune[gguf]' "
            "(builds llama-cpp-python), or choose q4_0 / q4_1, which need nothing more"
        ) from e
    f16 = write_gguf(model, tokenizer, path.with_suffix(".f16.tmp"), quant="f16", name=name)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    rc = llama_cpp.llama_model_quantize(str(f16).encode(), str(path).encode(), ctypes.byref(params))
    f16.unlink()
    if rc != 0:
        raise ChattuneError(f"llama.cpp could not quantise {path.name} to q4_k_m (code {rc})")
    return path
