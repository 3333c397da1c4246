"""Jobs the dashboard starts: `python -m chattune <verb> ...` as separate processes.

Each job gets a record in <runs>/.ui/jobs/<id>.json and a log next to it. The process runs in its own
session, so closing the browser or restarting the dashboard loses nothing: the next dashboard reads the
records back and checks the processes are alive. A small `sh` wrapper writes the exit status to
<id>.rc, because a restarted dashboard is no longer the parent that could wait() for it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

import chattune

# `trap : TERM` keeps the wrapper alive until the job has handled SIGTERM (a trapped signal is reset to
# the default in children, unlike an ignored one), so the exit status is still written.
WRAPPER = 'trap : TERM INT; "$@"; echo $? > "$CHATTUNE_JOB_RC"'
VERBS = {"train": ["train"], "prepare": ["data", "prepare"], "eval": ["eval"], "export": ["export"]}


class Jobs:
    def __init__(self, state_dir: Path, cwd: Path):
        self.dir = state_dir / "jobs"
        self.config_dir = state_dir / "configs"
        self.cwd = cwd
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, kind: str, args: list[str], *, run: str | None = None) -> dict[str, Any]:
        """Start `python -m chattune <verb> *args` and return its record."""
        if kind not in VERBS:
            raise ValueError(f"unknown job kind {kind!r} (one of {', '.join(VERBS)})")
        self.dir.mkdir(parents=True, exist_ok=True)
        ident = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        log, rc = self.dir / f"{ident}.log", self.dir / f"{ident}.rc"
        argv = [sys.executable, "-m", "chattune", *VERBS[kind], *args]
        env = dict(os.environ, CHATTUNE_JOB_RC=str(rc))
        # The job runs the same chattune as the dashboard, also from a source checkout.
        package_root = str(Path(chattune.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                ["sh", "-c", WRAPPER, "sh", *argv],
                cwd=self.cwd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self._procs[ident] = proc
        record = {
            "id": ident,
            "kind": kind,
            "argv": argv[1:],
            "run": run,
            "pid": proc.pid,
            "pid_started": psutil.Process(proc.pid).create_time(),
            "started": time.time(),
            "log": str(log),
        }
        (self.dir / f"{ident}.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        return self._with_state(record)

    def list(self) -> list[dict[str, Any]]:
        if not self.dir.is_dir():
            return []
        records = [json.loads(p.read_text(encoding="utf-8")) for p in self.dir.glob("*.json")]
        return sorted((self._with_state(r) for r in records), key=lambda r: r["started"], reverse=True)

    def get(self, ident: str) -> dict[str, Any]:
        path = self.dir / f"{Path(ident).name}.json"
        if not path.is_file():
            raise KeyError(ident)
        return self._with_state(json.loads(path.read_text(encoding="utf-8")))

    def log_tail(self, ident: str, max_bytes: int = 20_000) -> str:
        path = Path(self.get(ident)["log"])
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - max_bytes))
            return fh.read().decode("utf-8", errors="replace")

    def stop(self, ident: str) -> dict[str, Any]:
        """SIGTERM to the job's process group: training saves a checkpoint and exits (resume later)."""
        record = self.get(ident)
        if record["state"] == "running":
            os.killpg(record["pid"], signal.SIGTERM)
        return record

    def _with_state(self, record: dict[str, Any]) -> dict[str, Any]:
        proc = self._procs.get(record["id"])
        if proc is not None:
            proc.poll()  # reap our own child so it does not linger as a zombie
        rc_file = self.dir / f"{record['id']}.rc"
        rc = rc_file.read_text().strip() if rc_file.is_file() else None
        if rc:
            state = {"0": "finished", "143": "stopped"}.get(rc, f"exit {rc}")  # 143: train stopped on SIGTERM
        else:
            state = "running" if _alive(record["pid"], record["pid_started"]) else "ended"
        return {**record, "state": state, "returncode": int(rc) if rc and rc.lstrip("-").isdigit() else None}


def stop_pid(pid: int, pid_started: float) -> bool:
    """SIGTERM a training process recorded in a run's status.json, if it is still that process."""
    if not _alive(pid, pid_started):
        return False
    os.kill(pid, signal.SIGTERM)
    return True


def _alive(pid: int, started: float) -> bool:
    try:
        proc = psutil.Process(pid)
        # psutil has no annotations: create_time() is a float, status() a str
        return bool(abs(proc.create_time() - started) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
