"""A run's lifecycle, written into its directory so anyone can read it, even after a crash.

    runs/<name>/status.json   {"state": "running", "pid": 1234, "pid_started": 1.7e9, "host": ..., ...}

The training process writes `running` when it starts, `finished`, `stopped` (SIGTERM or Ctrl-C: the run
saved a checkpoint and can be resumed with --resume) or `failed` (with the error) when it ends. A process
killed outright (SIGKILL, out of memory, power cut) cannot write anything, so `read_status` checks that
the recorded process is still alive (pid *and* its start time, so a recycled pid does not count) and
reports `failed` when it is not. Older runs without the file are `finished` when final/ exists.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Literal

import psutil

from chattune.config import greater_is_better

STATUS_FILE = "status.json"
State = Literal["running", "finished", "failed", "stopped"]


def write_status(run_dir: Path, state: State, **extra: Any) -> None:
    """Record the run's state atomically (a reader never sees half a file)."""
    path = run_dir / STATUS_FILE
    old: dict[str, Any] = {}
    if state != "running" and path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
    me = psutil.Process()
    body = {
        **old,
        "state": state,
        "pid": me.pid,
        "pid_started": me.create_time(),
        "host": socket.gethostname(),
        "updated": time.time(),
        **extra,
    }
    if state == "running":
        body["started"] = time.time()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def read_status(run_dir: Path) -> dict[str, Any]:
    """The run's state as recorded, corrected for a process that died without saying so."""
    path = run_dir / STATUS_FILE
    if not path.is_file():
        state = "finished" if (run_dir / "final").is_dir() else "failed"
        return {"state": state, "note": "no status.json (run made before it was recorded)"}
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        body = None
    if not isinstance(body, dict):
        return {"state": "failed", "note": "status.json unreadable"}
    if body.get("state") == "running" and not _alive(body):
        body = {**body, "state": "failed", "note": "the training process is gone (killed or crashed)"}
    return body


def _alive(body: dict[str, Any]) -> bool:
    if body.get("host") != socket.gethostname():
        return True  # another machine's process: we cannot tell, so believe the file
    try:
        proc = psutil.Process(int(body["pid"]))
        # psutil has no annotations: create_time() is a float, status() a str
        return bool(abs(proc.create_time() - float(body["pid_started"])) < 1.0 and proc.status() != "zombie")
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False


# ----------------------------------------------------------------------------------------------------
# summaries of run directories (the dashboard's runs table; anything else that lists runs)


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file()


def find_runs(root: Path) -> list[Path]:
    """Run directories under root: its children, and the trials of sweeps (<sweep>/trials/trial-NNNN)."""
    if not root.is_dir():
        return []
    found = []
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            continue
        if is_run_dir(child):
            found.append(child)
        elif (child / "trials").is_dir():
            found += [t for t in sorted((child / "trials").iterdir()) if is_run_dir(t)]
    return found


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Name, state, model, method, steps, best metric, duration and peak memory, from the files alone."""
    import yaml

    from chattune.train.monitor import read_metrics

    status = read_status(run_dir)
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        cfg = {}
    metrics_file = run_dir / "metrics.jsonl"
    try:
        records = read_metrics(metrics_file) if metrics_file.is_file() else []
    except (OSError, json.JSONDecodeError):  # a line being written right now
        records = []
    train = [r for r in records if r.get("split") == "train"]
    evals = [r for r in records if r.get("split") == "eval"]
    eval_cfg = cfg.get("eval") or {}
    metric = eval_cfg.get("metric", "val_loss")
    values = [r[metric] for r in evals if isinstance(r.get(metric), int | float)]
    try:
        higher = greater_is_better(metric)
    except ValueError:  # a metric this version does not know (the run's config is only JSON here)
        higher = not metric.endswith("loss")
    best = (max if higher else min)(values) if values else None
    memory = [r["peak_rss_gb"] for r in train if isinstance(r.get("peak_rss_gb"), int | float)]
    started = status.get("started")
    end = status.get("updated") if status["state"] != "running" else time.time()
    if records and metrics_file.is_file() and status["state"] == "running":
        end = time.time()
    return {
        "name": run_dir.name,
        "state": status["state"],
        "note": status.get("note") or status.get("error"),
        "model": (cfg.get("model") or {}).get("name"),
        "method": (cfg.get("train") or {}).get("method"),
        "steps": records[-1]["step"] if records else 0,
        "max_steps": (cfg.get("train") or {}).get("max_steps"),
        "metric": metric,
        "best": best,
        "last_loss": train[-1].get("loss") if train else None,
        "duration_s": (end - started) if started and end else None,
        "peak_memory_gb": max(memory) if memory else None,
        "updated": metrics_file.stat().st_mtime if metrics_file.is_file() else None,
        "pid": status.get("pid") if status["state"] == "running" else None,
    }
