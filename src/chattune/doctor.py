"""`chattune doctor [CONFIG]`: what this machine has, and what a run of CONFIG would need.

    chattune doctor                          # accelerators, CPU features, memory, library versions
    chattune doctor examples/quickstart.yaml # + memory estimate for full / LoRA / QLoRA and a recommendation

The memory estimate counts weights, gradients and AdamW state exactly from the model's parameter count
(read from its config on the meta device: no weights are loaded), and activations with the usual
per-token-per-layer estimate for decoder blocks (Korthikanti et al. 2022: ~34*hidden + 5*heads*seq
bytes per token per layer in 16-bit; on CPU in fp32 and without the attention-score term, as measured),
so it is a planning figure, good to about +-25%.
"""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from chattune.config import RunConfig
from chattune.hardware import accelerator_kind, cpu_bf16, cpu_count, cpu_flags, resolve_precision

GiB = 1024**3
LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "optuna",
    "bitsandbytes",
    "flash-attn",
    "deepspeed",
    "gguf",
    "tensorboard",
    "trl",
    "liger-kernel",
)
CPU_FEATURES = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512F",
    "avx512_bf16": "AVX512-BF16",
    "avx512_vnni": "AVX512-VNNI",
    "amx_tile": "AMX",
    "amx_bf16": "AMX-BF16",
    "neon": "NEON",
    "asimd": "ASIMD",
}


@dataclass
class Device:
    name: str
    memory_bytes: int
    detail: str


def devices() -> list[Device]:
    import psutil
    import torch

    kind = accelerator_kind()
    if kind in ("cuda", "rocm"):
        out = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out.append(
                Device(
                    f"{kind}:{i} {p.name}",
                    p.total_memory,
                    f"{p.multi_processor_count} SMs, compute capability {p.major}.{p.minor}",
                )
            )
        return out
    mem = psutil.virtual_memory()
    if kind == "mps":
        return [Device("mps (Apple GPU, unified memory)", mem.total, "shares system memory")]
    return [
        Device(
            f"cpu: {platform.processor() or platform.machine()}",
            mem.available,
            f"{cpu_count()} cores, {mem.total / GiB:.1f} GiB total",
        )
    ]


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "-"
    import torch

    if torch.version.cuda:
        out["torch"] += f" (CUDA {torch.version.cuda})"
    elif getattr(torch.version, "hip", None):
        out["torch"] += f" (ROCm {torch.version.hip})"
    else:
        out["torch"] += " (CPU build)"
    return out


@dataclass
class ModelShape:
    params: int
    hidden: int
    layers: int
    heads: int
    vocab: int
    linear_dims: list[tuple[int, int]]  # (in, out) of every linear layer in one block, for LoRA sizes
    embedding_params: int = 0  # token embeddings and output head (once when tied): train.freeze_embeddings


def model_shape(cfg: RunConfig) -> ModelShape:
    """Parameter count and block shape, from the config alone (weights built on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from chattune.model import resolve_source

    source = resolve_source(cfg.model.name)
    config = AutoConfig.from_pretrained(
        source.path, gguf_file=source.gguf_file, trust_remote_code=cfg.model.trust_remote_code
    )
    # The meta device builds the module tree without memory and, unlike accelerate's
    # init_empty_weights, keeps tied embeddings tied (counted once).
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=cfg.model.trust_remote_code)
    params = sum(p.numel() for p in model.parameters())
    tables = {
        id(m.weight): m.weight.numel()
        for m in (model.get_input_embeddings(), model.get_output_embeddings())
        if m is not None
    }
    layers = getattr(config, "num_hidden_layers", 1)
    first_block = next((m for n, m in model.named_modules() if n.endswith(".0") and "layers" in n), model)
    linear = [
        (m.in_features, m.out_features) for m in first_block.modules() if isinstance(m, torch.nn.Linear)
    ]
    return ModelShape(
        params,
        config.hidden_size,
        layers,
        getattr(config, "num_attention_heads", 1),
        config.vocab_size,
        linear,
        sum(tables.values()),
    )


def estimate_memory(shape: ModelShape, cfg: RunConfig, method: str, precision: str) -> dict[str, float]:
    """Bytes for weights, gradients, optimizer state and activations of one training step."""
    p, half = shape.params, precision in ("bf16", "fp16")
    on_cpu = accelerator_kind() == "cpu"
    tokens = cfg.train.batch_size * cfg.data.max_length
    # On CPU, autocast keeps the residual stream and what the kernels save in fp32 whatever the precision,
    # and attention (chattune's per-conversation kernel, or SDPA's flash path) stores no seq x seq scores.
    # Measured, quickstart at 4 x 256: fp32 (AVX2 EPYC) 3.11 GB peak RSS, bf16 (AVX512-BF16 EPYC) 3.57 GB.
    act_bytes = 2 if half and not on_cpu else 4
    scores = 0 if on_cpu else 5 * shape.heads * cfg.data.max_length
    per_token_layer = (34 * shape.hidden + scores) * act_bytes / 2
    if cfg.train.gradient_checkpointing:  # keep block inputs only, recompute one block at a time
        activations = tokens * (shape.layers * 2 * shape.hidden * act_bytes + per_token_layer)
    else:
        activations = tokens * shape.layers * per_token_layer
    activations += tokens * shape.vocab * 4 * 0.5  # fp32 logits of the supervised share (~half), chunked
    lora_params = shape.layers * sum(cfg.lora.r * (i + o) for i, o in shape.linear_dims)
    weights: float  # bytes, as are grads and optim
    grads: float
    optim: float
    if method == "full":
        trained = p - (shape.embedding_params if cfg.train.freeze_embeddings else 0)
        weights, grads, optim = 4 * p, 4 * trained, 8 * trained  # fp32 master weights, grads, AdamW m and v
        if half and on_cpu:
            weights += 2 * p  # CPU autocast keeps a 16-bit copy of each weight for the step
    elif method == "lora":
        weights, grads, optim = (
            (2 if half and accelerator_kind() != "cpu" else 4) * p + 4 * lora_params,
            4 * lora_params,
            8 * lora_params,
        )
    else:  # qlora: NF4 weights (~0.5 byte + scales) with bf16 compute
        weights, grads, optim = 0.56 * p + 4 * lora_params, 4 * lora_params, 8 * lora_params
    total = (weights + grads + optim + activations) * 1.1  # ~10% allocator and framework overhead
    return {
        "weights": weights,
        "gradients": grads,
        "optimizer": optim,
        "activations": activations,
        "total": total,
    }


def recommend(shape: ModelShape, cfg: RunConfig, budget: int) -> tuple[str, str]:
    """(method, reason): the most capable method whose estimate fits in 85% of the device memory."""
    precision = resolve_precision(cfg.train.precision)
    methods = ["full", "lora"] + (["qlora"] if accelerator_kind() == "cuda" else [])
    for method in methods:
        need = estimate_memory(shape, cfg, method, precision)["total"]
        if need <= 0.85 * budget:
            return method, f"{method} needs ~{need / GiB:.1f} GiB of {budget / GiB:.1f} GiB available"
    if not cfg.train.gradient_checkpointing:
        return (
            methods[-1],
            "nothing fits as configured: set train.gradient_checkpointing=true and/or lower train.batch_size or data.max_length",
        )
    return methods[-1], "nothing fits: lower train.batch_size or data.max_length, or use a smaller model"


def run_doctor(cfg: RunConfig | None, *, console: Console) -> dict[str, Any]:
    found = devices()
    table = Table(title="hardware", show_header=False, title_justify="left")
    table.add_row("accelerator", accelerator_kind())
    for d in found:
        table.add_row(
            d.name,
            f"{d.memory_bytes / GiB:.1f} GiB{' available' if d.name.startswith('cpu') else ''}; {d.detail}",
        )
    flags = cpu_flags()
    table.add_row("cpu features", ", ".join(v for k, v in CPU_FEATURES.items() if k in flags) or "(unknown)")
    table.add_row("bf16 on cpu", "native (AVX512-BF16/AMX)" if cpu_bf16() else "emulated (slower than fp32)")
    table.add_row("precision (auto)", resolve_precision("auto"))
    console.print(table)
    versions = library_versions()
    lib = Table(title="libraries", show_header=False, title_justify="left")
    for name, version in versions.items():
        lib.add_row(name, version)
    console.print(lib)
    report: dict[str, Any] = {
        "accelerator": accelerator_kind(),
        "devices": [d.__dict__ for d in found],
        "libraries": versions,
    }
    if cfg is None:
        return report

    shape = model_shape(cfg)
    precision = resolve_precision(cfg.train.precision)
    est = Table(
        title=f"{cfg.model.name}: {shape.params / 1e6:,.0f}M parameters, batch {cfg.train.batch_size} x {cfg.data.max_length} tokens, {precision}",
        title_justify="left",
    )
    for col in ("method", "weights", "gradients", "optimizer", "activations", "total"):
        est.add_column(col, justify="right" if col != "method" else "left")
    estimates = {}
    for method in ("full", "lora", "qlora"):
        e = estimate_memory(shape, cfg, method, precision)
        estimates[method] = e
        est.add_row(
            method,
            *(f"{e[k] / GiB:.2f} GiB" for k in ("weights", "gradients", "optimizer", "activations", "total")),
        )
    console.print(est)
    budget = min(d.memory_bytes for d in found)
    method, reason = recommend(shape, cfg, budget)
    batch = cfg.train.batch_size
    while (
        batch > 1
        and estimate_memory(
            shape,
            cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": batch})}),
            method,
            precision,
        )["total"]
        > 0.85 * budget
    ):
        batch //= 2
    console.print(
        f"[bold]recommendation[/]: train.method={method}, train.precision={precision}, train.batch_size={batch} ({reason})"
    )
    if cfg.train.method == "qlora" and accelerator_kind() != "cuda":
        console.print("[yellow]train.method=qlora needs a CUDA GPU with bitsandbytes; not available here[/]")
    report.update(
        params=shape.params,
        estimates=estimates,
        recommendation={"method": method, "precision": precision, "batch_size": batch, "reason": reason},
    )
    return report
