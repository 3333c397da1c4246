"""chattune's own kernels for training: the same math as transformers and peft, faster and smaller.

    attention.py  per-conversation attention for packed rows (CPU)
    lora.py       LoRA layers as one autograd node (peft's Linear, fused)
    mlp.py        the gated MLP's silu(gate) * up keeping two tensors for backward, not three
    head.py       output head and cross-entropy of the scored tokens, chunked, gradients in forward
    dropout.py    LoRA input dropout drawing a quarter of the random numbers (CPU)
    and, while training on CPU, SDPA reads grouped key/value heads as they are (grouped_kv_in_cpu_attention)

Every one is applied by `apply()`, and only to architectures and library versions it was tested on
(TESTED, and the upper bounds in pyproject.toml for the libraries whose internals they rely on). It
returns what it changed; a kernel that should have matched and matched nothing is a warning, not a
silent slow run. `train.cpu_kernels: off` gives plain transformers and peft (the same loss and
gradients, tested), and any other architecture trains through the model's own forward and head.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from chattune.train.cpu_kernels.attention import use_document_attention
from chattune.train.cpu_kernels.dropout import use_fast_lora_dropout
from chattune.train.cpu_kernels.lora import use_fused_lora
from chattune.train.cpu_kernels.mlp import use_silu_mul

if TYPE_CHECKING:
    import torch
    from torch import nn

    from chattune.config import TrainConfig

# model_type values whose modules the kernels were written against and tested on (tests build tiny
# Llama models; SmolLM2 is a Llama). Others train on plain transformers.
TESTED = frozenset({"llama"})
# The newest transformers minor version they were tested with (they use its attention interface and
# match its module code); a newer one trains on plain transformers until chattune is tested on it.
TESTED_WITH_TRANSFORMERS = (5, 25)


def model_type(model: nn.Module) -> str:
    get_base_model = getattr(model, "get_base_model", None)  # a peft model wraps the transformers one
    base = get_base_model() if callable(get_base_model) else model
    return str(getattr(getattr(base, "config", None), "model_type", ""))


def kernels_apply(model: nn.Module, train: TrainConfig) -> bool:
    """Whether `apply` will patch this model: train.cpu_kernels=auto, a tested architecture, and a
    transformers version no newer than the one the kernels were tested with."""
    return kernels_apply_to(model_type(model), train)


def kernels_apply_to(model_type: str, train: TrainConfig) -> bool:
    """`kernels_apply` for a model not loaded yet, by its config's model_type."""
    return train.cpu_kernels == "auto" and model_type in TESTED and _transformers_tested()


@functools.cache
def _transformers_tested() -> bool:
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    if (major, minor) <= TESTED_WITH_TRANSFORMERS:
        return True
    warnings.warn(
        f"transformers {transformers.__version__} is newer than chattune's kernels were tested with "
        f"({'.'.join(map(str, TESTED_WITH_TRANSFORMERS))}); training on plain transformers (slower)",
        stacklevel=2,
    )
    return False


def apply(model: nn.Module, train: TrainConfig, device: torch.device) -> list[str]:
    """Patch the model being trained with the kernels that fit it; returns one line per change."""
    if not kernels_apply(model, train):
        return []
    changed: list[str] = []

    def expect(name: str, count: int, wanted: bool = True) -> None:
        if count:
            changed.append(f"{name} ({count})")
        elif wanted:
            warnings.warn(
                f"train.cpu_kernels: the {name} kernel matched nothing in this {model_type(model)} model "
                "(a library update may have changed its modules); training continues without it",
                stacklevel=3,
            )

    lora = train.method != "full"
    if lora:
        expect("LoRA dropout", use_fast_lora_dropout(model), wanted=False)  # none when lora.dropout=0
        if train.method == "lora":
            expect("fused LoRA linear", use_fused_lora(model))
    if not train.compile:  # compiled layers: inductor recomputes silu itself; patching breaks its graph
        expect("gated MLP", use_silu_mul(model))
    if device.type == "cpu":
        expect("per-conversation attention", int(use_document_attention(model)))
    changed.append("fused output head and loss")
    return changed


def grouped_kv_in_cpu_attention(device: torch.device) -> Callable[[], None]:
    """On CPU, let SDPA read grouped keys/values (GQA) as they are; returns what undoes it.

    With a mask (our packed rows have one), transformers copies each key/value head to every query
    head it serves before SDPA, because some CUDA kernels need that. PyTorch's CPU flash kernel takes
    them grouped: the same attention, and on SmolLM2-135M (9 query heads, 3 key/value heads) ~240 MB
    less kept for backward at 4 x 512 tokens. transformers' switch for this is an environment variable.
    Training batches normally take per-conversation attention instead (attention.py); SDPA
    remains for batches with a conversation over 1,024 tokens and for generation during evaluation.
    """
    name = "TRANSFORMERS_SDPA_FORCE_GQA"
    if device.type != "cpu" or name in os.environ:  # elsewhere, or the user decided
        return lambda: None
    os.environ[name] = "1"

    def restore() -> None:
        os.environ.pop(name, None)

    return restore
