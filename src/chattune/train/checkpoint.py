"""Checkpoints that describe themselves, written atomically, picked only when complete.

    checkpoints/step-000040/
        model.safetensors | adapter_model.safetensors   weights (full) or LoRA adapter
        tokenizer files, chattune.yaml                  everything `chat`/`eval` need
        optimizer.pt                                    optimizer state (loaded with weights_only=True)
        rng.pt                                          torch CPU/CUDA generator states
        state.json                                      step, epoch, data position, best metric, ...

        manifest.json                                   every file's name and size, written last

A checkpoint is written into a hidden temporary folder, every file and the folder are fsynced, a
manifest is written, and only then is the folder renamed into place (and its parent fsynced): a run
killed at any point, or a machine that loses power, leaves no half checkpoint under a valid name.
Resume takes the newest checkpoint that is *sound* (manifest matches, state.json parses, weights
readable) and says what was wrong with any newer one it skipped.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch

from chattune.errors import ChattuneError
from chattune.runs import MANIFEST as MANIFEST  # the layout is part of this module's surface
from chattune.runs import checkpoint_dir as checkpoint_dir
from chattune.runs import latest_checkpoint as latest_checkpoint
from chattune.runs import list_checkpoints as list_checkpoints

# Test-only: called with a label at each point of a checkpoint write (tests kill the process there).
# None in every real run.
on_save_point: Callable[[str], None] | None = None


def _point(label: str) -> None:
    if on_save_point is not None:
        on_save_point(label)


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
    nonfinite_steps: int = 0  # optimizer steps skipped for a non-finite loss or gradient
    nonfinite_in_row: int = 0


def save_checkpoint(
    root: Path,
    state: TrainState,
    *,
    save_weights: Callable[[Path], None],
    optimizer_state: dict[str, Any],
    config_yaml: str,
    bytes_needed: int = 0,
) -> Path:
    """Write checkpoint `step-NNNNNN` crash-safely (see the module docstring). On a full disk or another
    I/O error nothing partial is left behind and the error names the path and the space needed."""
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(root, state.step)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        _point("start")
        save_weights(tmp)
        _point("weights")
        torch.save(optimizer_state, tmp / "optimizer.pt")
        _point("optimizer")
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
        torch.save(rng, tmp / "rng.pt")
        _point("rng")
        (tmp / "chattune.yaml").write_text(config_yaml, encoding="utf-8")
        _point("yaml")
        (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2), encoding="utf-8")
        _point("state")
        files = sorted(p for p in tmp.iterdir() if p.is_file())
        for f in files:
            _fsync(f)
            _point(f"fsync {f.name}")
        manifest = {"step": state.step, "files": {f.name: f.stat().st_size for f in files}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        _point("manifest written")
        _fsync(tmp / MANIFEST)
        _point("fsync manifest")
        _fsync(tmp)
        _point("fsync dir")
        if final.exists():  # re-saving a step (after a resume): move the old one aside, then swap
            old = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-old-"))
            os.replace(final, old / final.name)
            _point("moved old")
        os.replace(tmp, final)
        _point("renamed")
        _fsync(root)
        _point("fsync root")
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(root).free
            raise ChattuneError(
                f"no space left writing checkpoint {final}: it needs about {_size(bytes_needed)}, "
                f"{_size(free)} free on {root}; free space or set output.dir elsewhere, then --resume "
                "(the previous checkpoint is intact)"
            ) from None
        raise ChattuneError(
            f"could not write checkpoint {final}: {e}; the previous checkpoint is intact"
        ) from None
    return final


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _fsync(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk, so a rename never lands before it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def problem(path: Path) -> str | None:
    """What is wrong with a checkpoint, or None when it is sound: files missing or of another size
    than the manifest says (a truncated write, a damaged disk), a state.json that does not parse,
    weights whose safetensors header does not describe the file."""
    manifest_file = path / MANIFEST
    if manifest_file.is_file():
        try:
            files = json.loads(manifest_file.read_text(encoding="utf-8"))["files"]
        except (ValueError, KeyError) as e:
            return f"{MANIFEST} is invalid ({e})"
        for name, size in files.items():
            f = path / name
            if not f.is_file():
                return f"{name} is missing"
            if f.stat().st_size != size:
                return f"{name} is {f.stat().st_size} bytes, the manifest says {size} (truncated?)"
    try:
        TrainState(**json.loads((path / "state.json").read_text(encoding="utf-8")))
    except FileNotFoundError:
        return "state.json is missing"
    except (ValueError, TypeError) as e:
        return f"state.json is invalid ({e})"
    from safetensors import safe_open

    for f in path.glob("*.safetensors"):
        try:
            with safe_open(str(f), framework="pt") as st:
                for key in st.keys():  # noqa: SIM118 (safe_open is not iterable)
                    st.get_slice(key).get_shape()
        except Exception as e:  # safetensors raises its own error types for damaged headers
            return f"{f.name} is unreadable ({e})"
    return None


def sound_checkpoints(root: Path, warn: Callable[[str], None]) -> list[Path]:
    """Complete checkpoints newest first, skipping (and warning about) those that fail `problem()`."""
    found = []
    for path in reversed(list_checkpoints(root)):
        why = problem(path)
        if why is None:
            found.append(path)
        else:
            warn(f"checkpoint {path} is damaged: {why}; falling back to an older one")
    return found


def load_state(path: Path) -> TrainState:
    return TrainState(**json.loads((path / "state.json").read_text(encoding="utf-8")))


def load_optimizer_state(path: Path) -> dict[str, Any]:
    # what _save_checkpoint wrote: optimizer.state_dict()
    return cast(dict[str, Any], torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))


def restore_rng(path: Path) -> None:
    rng = torch.load(path / "rng.pt", map_location="cpu", weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(rng["cuda"]))


def prune(root: Path, keep_last: int, protect: Path | None) -> None:
    """Delete all but the newest `keep_last` checkpoints, never the protected (best) one; also clear
    temporary folders left by a killed run."""
    for tmp in root.glob(".tmp-*"):  # only our own run writes here, and not now
        shutil.rmtree(tmp, ignore_errors=True)
    found = list_checkpoints(root)
    for path in found[: max(0, len(found) - keep_last)]:
        if protect is None or path.resolve() != protect.resolve():
            shutil.rmtree(path)
