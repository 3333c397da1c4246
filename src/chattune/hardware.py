"""What this machine can do: accelerator, CPU features, memory. Used by `doctor` and to pick precision."""

from __future__ import annotations

import os
import platform
from functools import cache
from typing import Any


@cache
def cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_bf16() -> bool:
    """Native bf16 matmul on the CPU (AVX512-BF16 or AMX): bf16 autocast is then faster than fp32."""
    if platform.machine() == "arm64" and platform.system() == "Darwin":
        return False
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def accelerator_kind() -> str:
    import torch

    if torch.cuda.is_available():
        return "rocm" if getattr(torch.version, "hip", None) else "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_precision(precision: str) -> str:
    """'auto' -> bf16 where the hardware does it natively, fp16 on older GPUs, else fp32."""
    if precision != "auto":
        return precision
    import torch

    kind = accelerator_kind()
    if kind in ("cuda", "rocm"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if kind == "mps":
        return "fp32"
    return "bf16" if cpu_bf16() else "fp32"


def matmul_flops(precision: str, seconds: float = 1.0) -> float:
    """Measured dense matmul throughput (FLOP/s) on the training device at the training precision: the
    ceiling a training step approaches. A short probe (about `seconds`), for time estimates."""
    import time

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    n = 2048 if device == "cuda" else 768
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    (a @ b).sum().item()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        c = a @ b
        done += 1
    c.sum().item()  # waits for the device
    return 2 * n**3 * done / (time.perf_counter() - start)


def training_time_estimate(tokens: int, epochs: float, n_params: int | None) -> dict[str, Any] | None:
    """Rough wall-clock for local training: 6 * params * tokens FLOPs at a typical sustained rate
    (40% of an A100-class GPU's bf16 peak on CUDA; about 25 GFLOP/s per CPU core in fp32)."""
    if not n_params or not tokens:
        return None
    import torch

    if torch.cuda.is_available():
        device, flops = torch.cuda.get_device_name(0), 0.4 * 312e12
    else:
        device, flops = f"CPU x{torch.get_num_threads()}", 25e9 * torch.get_num_threads()
    seconds = 6 * n_params * tokens * epochs / flops
    return {
        "device": device,
        "params": n_params,
        "tokens": tokens,
        "epochs": epochs,
        "seconds": round(seconds, 1),
    }
