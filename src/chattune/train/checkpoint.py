"""Checkpoints that describe themselves, written atomically, picked only when complete.

    checkpoints/step-000040/
        model.safetensors | adapter_model.safetensors   weights (full) or LoRA adapter
        tokenizer files, chattune.yaml                  everything `chat`/`eval` need
        optimizer.pt                                    optimizer state (loaded with weights_only=True)
        rng.pt                                          torch CPU/CUDA generator states
        state.json                                      step, epoch, data position, best metric, ...

A checkpoint is written into a hidden temporary folder and renamed into place, so a run killed
mid-write leaves no half checkpoint under a valid name; `state.json` is written last.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class TrainState:
    step: int = 0  # optimizer steps completed
    micro_step: int = 0  # micro-batches consumed: the data position
    epoch: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    tokens_seen: int = 0
    targets_seen: int = 0
    elapsed_seconds: float = 0.0
    stopped_early: bool = False


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:06d}"


def save_checkpoint(
    root: Path,
    state: TrainState,
    *,
    save_weights: Callable[[Path], None],
    optimizer_state: dict[str, Any],
    config_yaml: str,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(root, state.step)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    save_weights(tmp)
    torch.save(optimizer_state, tmp / "optimizer.pt")
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    torch.save(rng, tmp / "rng.pt")
    (tmp / "chattune.yaml").write_text(config_yaml, encoding="utf-8")
    (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2), encoding="utf-8")
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def is_complete(path: Path) -> bool:
    return STEP_DIR.match(path.name) is not None and (path / "state.json").is_file()


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and is_complete(p)), key=lambda p: p.name)


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def load_state(path: Path) -> TrainState:
    return TrainState(**json.loads((path / "state.json").read_text(encoding="utf-8")))


def load_optimizer_state(path: Path) -> dict[str, Any]:
    return torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)


def restore_rng(path: Path) -> None:
    rng = torch.load(path / "rng.pt", map_location="cpu", weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(rng["cuda"]))


def prune(root: Path, keep_last: int, protect: Path | None) -> None:
    """Delete all but the newest `keep_last` checkpoints, never the protected (best) one; also clear
    temporary folders left by a killed run."""
    for tmp in root.glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    found = list_checkpoints(root)
    for path in found[: max(0, len(found) - keep_last)]:
        if protect is None or path.resolve() != protect.resolve():
            shutil.rmtree(path)
