"""What the sweep tests share: configs on the tiny model, worker processes, the study's trials."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml

from chattune.config import load_config
from chattune.sweep.run import open_study

ONE_THREAD = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(sys.path),  # the worker processes run this checkout's chattune
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
LR_SCHED_GRID = {
    "train.learning_rate": {"type": "float", "values": [3e-4, 3e-3]},
    "train.scheduler": {"type": "categorical", "choices": ["cosine", "constant"]},
}


def write_config(
    tmp_path: Path,
    model_dir: Path,
    train_file: Path,
    sweep: dict,
    *,
    steps: int = 4,
    every: int = 2,
    name: str = "s",
) -> Path:
    cfg = {
        "model": {"name": str(model_dir)},
        "data": {"train_file": str(train_file), "val_fraction": 0.25, "max_length": 128},
        "train": {
            "recipe": "manual",
            "learning_rate": 1e-3,
            "precision": "fp32",
            "max_steps": 50,
            "log_every": 50,
        },
        "eval": {"every_steps": every},
        "output": {"dir": str(tmp_path / "runs"), "tensorboard": False, "keep_last": 1},
        "sweep": {"max_steps_per_trial": steps, "pruner": "none", **sweep},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def trials_of(cfg_path: Path) -> list[optuna.trial.FrozenTrial]:
    study, _, _ = open_study(load_config(cfg_path), worker=True)
    return study.get_trials()


def sweep_process(cfg_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "chattune", "sweep", str(cfg_path), *args],
        env=ONE_THREAD,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(condition, proc: subprocess.Popen, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"sweep exited early ({proc.returncode}):\n{proc.stdout.read()}")
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)
