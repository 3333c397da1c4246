"""Where a run directory keeps its checkpoints: `checkpoints/step-NNNNNN/`, complete once it has a
manifest. Written by `chattune.train.checkpoint`; read wherever a run's weights are looked up (chat,
eval, export, serve, the dashboard), which need not load the training code to find them."""

from __future__ import annotations

import re
from pathlib import Path

STEP_DIR = re.compile(r"^step-(\d+)$")
MANIFEST = "manifest.json"


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:06d}"


def is_complete(path: Path) -> bool:
    """Named like a checkpoint and finished (a manifest, or for checkpoints older than manifests, a
    state.json). `chattune.train.checkpoint.problem()` checks that the contents still match."""
    return STEP_DIR.match(path.name) is not None and (
        (path / MANIFEST).is_file() or (path / "state.json").is_file()
    )


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and is_complete(p)), key=lambda p: p.name)


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None
