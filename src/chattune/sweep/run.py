"""`chattune sweep CONFIG [--worker]`: hyperparameter search, one normal training run per trial.

    chattune sweep examples/sweep.yaml                       # create or continue the study, then report
    chattune sweep examples/sweep.yaml --worker              # on more processes/machines: join it
    result = run_sweep(load_config("examples/sweep.yaml"), source="examples/sweep.yaml")

The study lives in an Optuna storage (default: SQLite in the sweep directory; any database URL for
several machines). Each process loops: count the trials finished in the storage (over every worker and
restart), stop at sweep.n_trials, else ask for one trial and train it in <sweep dir>/trials/trial-NNNN.
Validation metrics are reported to the pruner from the run's own on_eval hook; a pruned trial stops.

A worker that dies leaves its trial RUNNING; its heartbeat stops, and after sweep.grace_seconds the
next process to ask for a trial marks it FAILED and queues a copy with the same parameters (Optuna's
heartbeat + retry callback). The copy adopts the dead trial's run directory (renamed to its own number)
and resumes from its latest checkpoint, so a kill costs at most the steps since that checkpoint.
Ctrl-C does the same at once. A process with nothing left to start but trials still running elsewhere
waits for them (or for them to go stale), so every process ends with the study complete.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chattune.config import RunConfig
from chattune.config.sweep import SweepConfig
from chattune.errors import ChattuneError, ConfigError
from chattune.sweep.space import suggest, trial_config, validate_space
from chattune.sweep.storage import StartLock, database_url, open_storage
from chattune.sweep.storage import safe_url as _safe_url
from chattune.sweep.trial import die_with_parent, write_job
from chattune.train.monitor import read_metrics

FINGERPRINT_ATTR = "chattune_config"
# Sweep settings that may differ between the processes sharing a study (budget, place, bookkeeping).
PER_PROCESS = (
    "n_trials",
    "timeout_minutes",
    "storage",
    "study_name",
    "dir",
    "heartbeat_seconds",
    "grace_seconds",
    "max_retries",
    "keep_weights",
)


@dataclass
class SweepResult:
    sweep_dir: Path
    study_name: str
    storage: str
    counts: dict[str, int]
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_yaml: Path | None = None
    ran_here: int = 0

    def summary(self) -> str:
        counts = ", ".join(f"{n} {state}" for state, n in self.counts.items() if n)
        best = (
            f"; best trial {self.best_number}: {self.best_value:.4f}"
            if self.best_value is not None
            else "; no complete trial"
        )
        return f"{counts or 'no trials'}{best}; results in {self.sweep_dir}"


def sweep_dir(cfg: RunConfig) -> Path:
    assert cfg.sweep is not None
    return cfg.sweep.dir or cfg.output.dir / f"{cfg.output.name or 'run'}-sweep"


def storage_url(cfg: RunConfig) -> str:
    assert cfg.sweep is not None
    return cfg.sweep.storage or f"sqlite:///{(sweep_dir(cfg) / 'study.db').resolve()}"


def run_sweep(
    cfg: RunConfig, *, source: str = "<config>", worker: bool = False, console: Console | None = None
) -> SweepResult:
    """Run trials until the study holds sweep.n_trials finished ones (or the time is up); the main
    process (not --worker) then writes trials.csv, plots, summary.html and best.yaml."""
    from chattune.sweep.report import write_reports

    console = console or Console()
    if cfg.sweep is None:
        raise ConfigError(
            source, ["sweep: missing; add a sweep section with a search space (see examples/sweep.yaml)"]
        )
    validate_space(cfg, source)
    root = sweep_dir(cfg)
    (root / "trials").mkdir(parents=True, exist_ok=True)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print one line per trial instead
    try:
        with warnings.catch_warnings():
            # Heartbeats, retries, constant_liar and the matplotlib plots are "experimental" in Optuna.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study, retry, url = open_study(cfg, source=source, worker=worker)
            if not worker:
                # The resolved config in full: to_yaml() leaves out nulls, and some (eval.every_steps) mean something.
                (root / "sweep.yaml").write_text(
                    yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
                )
            ran = _work(study, cfg, root, retry, worker=worker, console=console)
            best_yaml = None if worker else write_reports(study, cfg, root, console=console)
    finally:
        optuna.logging.set_verbosity(verbosity)
    trials = study.get_trials(deepcopy=False)
    best = study.best_trial if any(t.state == TrialState.COMPLETE for t in trials) else None
    return SweepResult(
        root,
        study.study_name,
        url,
        _counts(trials),
        best_number=best.number if best else None,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
        best_yaml=best_yaml,
        ran_here=ran,
    )


# ---------------------------------------------------------------------------------------------------
# the work loop


def _work(
    study: optuna.Study, cfg: RunConfig, root: Path, retry: Any, *, worker: bool, console: Console
) -> int:
    sweep = cfg.sweep
    assert sweep is not None
    target = _target(sweep)
    deadline = time.monotonic() + sweep.timeout_minutes * 60 if sweep.timeout_minutes else math.inf
    # Workers draw from their own stream: the same seed and history would give the same parameters.
    seed_offset = random.SystemRandom().randrange(1, 2**20) if worker and sweep.sampler != "grid" else 0
    objective = _Objective(cfg, root)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per trial would bury the sweep's lines
    ran, waiting_shown, failures = 0, False, 0
    console.print(
        f"sweep [bold]{study.study_name}[/]: {sweep.sampler} sampler, {sweep.pruner} pruner, "
        f"{'target ' + str(target) if target < math.inf else 'no trial limit'} trials"
        + (f", {sweep.timeout_minutes:g} min" if sweep.timeout_minutes else "")
        + f"; {sweep.metric} ({sweep.resolved_direction}); trials in {root / 'trials'}"
    )
    progress = Progress(
        TextColumn("[bold]sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
    )
    # Counting the trials and starting one happen under this lock, released once the new trial is
    # running with its parameters: unlocked, two workers can both start the last trial of a grid.
    lock = StartLock(database_url(storage_url(cfg), source="sweep.storage"), study.study_name)
    objective.started = lock.release
    with progress:
        task = progress.add_task("sweep", total=target if target < math.inf else None, info="")
        objective.console = progress.console
        while True:
            lock.acquire()
            trials = study.get_trials(deepcopy=False)
            tally = _tally(trials)
            progress.update(
                task,
                completed=tally["done"],
                info=f"{tally['running']} running elsewhere" if tally["running"] else "",
            )
            if tally["done"] >= target:
                lock.release()
                break
            if time.monotonic() > deadline:
                lock.release()
                progress.console.print(
                    f"[yellow]sweep.timeout_minutes ({sweep.timeout_minutes:g}) reached: no new trials[/]"
                )
                break
            if tally["waiting"] or tally["done"] + tally["running"] < target:
                # A fresh sampler per trial, seeded by the study's length: a restarted process goes on
                # drawing new points instead of replaying the draws of the first one.
                study.sampler = _sampler(sweep, sweep.seed + seed_offset + len(trials))
                try:
                    study.optimize(objective, n_trials=1, catch=(Exception,))
                except KeyboardInterrupt:
                    _requeue_interrupted(study, objective.current, retry)
                    progress.console.print(
                        f"[yellow]interrupted: trial {objective.current} is queued again; run the same command to go on[/]"
                    )
                    raise
                finally:
                    lock.release()  # a no-op when the trial has started (the objective released it)
                ran += 1
                waiting_shown = False
                _tidy_weights(study, sweep.keep_weights)
                failures = _check_failures(study, objective.current, failures)
            else:
                lock.release()
                if not waiting_shown:
                    progress.console.print(
                        f"waiting for {tally['running']} trial(s) running in other processes "
                        f"(one whose worker died is retried after {_grace(sweep)} s without a heartbeat)"
                    )
                    waiting_shown = True
                optuna.storages.fail_stale_trials(study)
                time.sleep(min(sweep.heartbeat_seconds, 5))
    return ran


class _TrialFailed(ChattuneError):
    """The trial's training process failed; the message already names the exception."""


class _Objective:
    """One trial: suggest parameters, train a normal run, report every evaluation to the pruner."""

    def __init__(self, cfg: RunConfig, root: Path) -> None:
        self.cfg, self.root = cfg, root
        self.console = Console()
        self.current: int | None = None
        # Called once the trial is running with its parameters drawn (releases the start lock).
        self.started: Callable[[], None] = lambda: None

    def __call__(self, trial: optuna.Trial) -> float:
        sweep = self.cfg.sweep
        assert sweep is not None
        self.current = trial.number
        params = suggest(trial, sweep)
        self.started()
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        try:
            run_cfg = trial_config(
                self.cfg,
                params,
                trials_dir=self.root / "trials",
                name=f"trial-{trial.number:04d}",
                cap=sweep.max_steps_per_trial,
            )
            resumed = _adopt_dead_run(_frozen(trial), run_cfg.run_dir)
            if resumed is not None:
                trial.set_user_attr("resumed_from", resumed)
            trial.set_user_attr("run_dir", str(run_cfg.run_dir))
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            self.console.print(
                f"trial {trial.number}: {shown}"
                + (f" [dim](resuming trial {resumed})[/]" if resumed is not None else "")
            )
            start = time.perf_counter()
            result = self._train_in_a_process(trial, run_cfg, resumed is not None)
            if result["state"] == "pruned":
                raise optuna.TrialPruned(result["message"])
            if result["state"] == "failed":
                raise _TrialFailed(result["error"])
            if result["state"] == "interrupted":
                raise KeyboardInterrupt
            trial.set_user_attr("steps", result["steps"])
            trial.set_user_attr("peak_rss_gb", _peak_rss(run_cfg.run_dir / "metrics.jsonl"))
            value = _best_value(run_cfg.run_dir / "metrics.jsonl", sweep.metric, sweep.resolved_direction)
        except optuna.TrialPruned as e:
            trial.set_user_attr("peak_rss_gb", _peak_rss(run_cfg.run_dir / "metrics.jsonl"))
            self.console.print(f"trial {trial.number}: [yellow]pruned[/] at {e}")
            raise
        except Exception as e:
            message = " ".join(str(e).split()) or type(e).__name__
            error = message if isinstance(e, _TrialFailed) else f"{type(e).__name__}: {message}"
            trial.set_user_attr("error", error[:500])
            self.console.print(f"trial {trial.number}: [red]failed[/] {error}", highlight=False)
            raise
        early = ", stopped early" if result["stopped_early"] else ""
        self.console.print(
            f"trial {trial.number}: {sweep.metric} [bold]{value:.4f}[/] ({result['steps']} steps{early}, {time.perf_counter() - start:.0f} s)"
        )
        return value

    def _train_in_a_process(self, trial: optuna.Trial, run_cfg: RunConfig, resume: bool) -> dict[str, Any]:
        """Train the trial's run in a fresh process (sweep/trial.py); this one keeps the heartbeat."""
        run_cfg.run_dir.mkdir(parents=True, exist_ok=True)
        job = run_cfg.run_dir.parent / f".{run_cfg.run_dir.name}.job.json"
        result_file = write_job(
            job,
            sweep_cfg=self.cfg,
            run_cfg=run_cfg,
            study=trial.study.study_name,
            trial_id=trial._trial_id,  # Optuna names a trial in its storage by this id only
            resume=resume,
        )
        child = subprocess.Popen(
            [sys.executable, "-m", "chattune.sweep.trial", str(job)], preexec_fn=die_with_parent
        )
        try:
            code = child.wait()
        except KeyboardInterrupt:  # the child got the same Ctrl-C: let it write its checkpoint
            child.wait(timeout=300)
            raise
        finally:
            job.unlink(missing_ok=True)
        if not result_file.is_file():
            raise ChattuneError(
                f"trial {trial.number}: its training process exited with {code} and no result"
            )
        result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
        result_file.unlink()
        return result


def _peak_rss(metrics_file: Path) -> float | None:
    """The highest peak RSS the run logged (GB): what to pick a batch size by (each trial trains in
    its own process, so this is that trial's own peak)."""
    if not metrics_file.is_file():
        return None
    peaks = [r["peak_rss_gb"] for r in read_metrics(metrics_file) if "peak_rss_gb" in r]
    return round(max(peaks), 3) if peaks else None


def _best_value(metrics_file: Path, metric: str, direction: str) -> float:
    """The trial's value: its best evaluation. final/ holds the best checkpoint, so this is the model a
    user gets from the trial (read from the run's metrics.jsonl, which also covers a resumed run)."""
    values = (
        [r[metric] for r in read_metrics(metrics_file) if r.get("split") == "eval" and metric in r]
        if metrics_file.is_file()
        else []
    )
    if not values:
        raise ChattuneError(f"{metrics_file.parent.name}: no {metric} was recorded (does the run validate?)")
    return float(min(values) if direction == "minimize" else max(values))


# ---------------------------------------------------------------------------------------------------
# study, storage, samplers, pruners


def open_study(
    cfg: RunConfig, *, source: str = "<config>", worker: bool = False
) -> tuple[optuna.Study, Any, str]:
    """Create (or, for a worker, load) the study and check it was started with the same config.
    Returns the study, the retry callback and the storage URL without its password."""
    sweep = cfg.sweep
    assert sweep is not None
    root = sweep_dir(cfg)
    root.mkdir(parents=True, exist_ok=True)
    url = storage_url(cfg)
    name = sweep.study_name or cfg.output.name or "sweep"
    retry_cls = (
        getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        or optuna.storages.RetryFailedTrialCallback
    )
    with warnings.catch_warnings():
        # heartbeats and retries work; "experimental" API
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = retry_cls(max_retry=sweep.max_retries)
        storage = open_storage(
            url,
            heartbeat_seconds=sweep.heartbeat_seconds,
            grace_seconds=_grace(sweep),
            retry=retry,
            source=source,
        )
    direction = sweep.resolved_direction
    pruner = _pruner(sweep, cfg)
    if worker:
        try:
            study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
        except KeyError:
            raise ConfigError(
                source,
                [
                    f"sweep.study_name: no study {name!r} in {_safe_url(url)}: start it with `chattune sweep {source}` (without --worker) first"
                ],
            ) from None
    else:
        study = optuna.create_study(
            study_name=name, storage=storage, direction=direction, pruner=pruner, load_if_exists=True
        )
    if study.direction.name.lower() != direction:
        raise ConfigError(
            source,
            [
                f"sweep.direction: study {name!r} was created to {study.direction.name.lower()}, this config says {direction}"
            ],
        )
    mine = _fingerprint(cfg)
    theirs = study.user_attrs.get(FINGERPRINT_ATTR)
    if theirs is None:
        study.set_user_attr(FINGERPRINT_ATTR, mine)
    elif theirs != mine:
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ConfigError(
            source,
            [
                f"study {name!r} in {_safe_url(url)} was started with a different config ({', '.join(differ[:8])} differ): "
                "use the same config, or a new sweep.study_name / sweep.dir"
            ],
        )
    return study, retry, _safe_url(url)


def _fingerprint(cfg: RunConfig) -> dict[str, Any]:
    """What every process sharing a study must agree on, as flat dotted keys (to name what differs)."""
    raw = cfg.model_dump(mode="json")
    raw.pop("output")
    sweep = raw.pop("sweep")
    for key in PER_PROCESS:
        sweep.pop(key, None)
    flat = _flatten(raw)
    flat.update({f"sweep.{k}": json.dumps(v, sort_keys=True) for k, v in sweep.items()})
    return {
        k: v if isinstance(v, str | int | float | bool) or v is None else json.dumps(v, sort_keys=True)
        for k, v in flat.items()
    }


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _sampler(sweep: SweepConfig, seed: int) -> optuna.samplers.BaseSampler:
    if sweep.sampler == "grid":
        # Same seed in every process: GridSampler maps trial numbers to points of one shuffled grid.
        return optuna.samplers.GridSampler(sweep.grid(), seed=sweep.seed)
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # TPE models the results only after n_startup_trials random ones (Optuna's default: 10). With a
    # small budget that would be all of it, so start modelling after a quarter of the trials.
    startup = max(2, min(10, (sweep.n_trials or 40) // 4))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def _pruner(sweep: SweepConfig, cfg: RunConfig) -> optuna.pruners.BasePruner:
    every = cfg.eval.every_steps
    # Trials report at their training steps; "warm-up evaluations" become the steps before the next one.
    warmup_steps = sweep.pruner_warmup_evals * every + 1 if every and sweep.pruner_warmup_evals else 0
    if sweep.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=sweep.pruner_startup_trials, n_warmup_steps=warmup_steps
        )
    if sweep.pruner == "hyperband":
        steps = sweep.max_steps_per_trial or cfg.train.max_steps
        return optuna.pruners.HyperbandPruner(
            min_resource=(every or 1) * max(1, sweep.pruner_warmup_evals),
            max_resource=steps or "auto",
            reduction_factor=3,
        )
    if sweep.pruner == "threshold":
        if sweep.resolved_direction == "minimize":
            return optuna.pruners.ThresholdPruner(upper=sweep.pruner_threshold, n_warmup_steps=warmup_steps)
        return optuna.pruners.ThresholdPruner(lower=sweep.pruner_threshold, n_warmup_steps=warmup_steps)
    return optuna.pruners.NopPruner()


def _grace(sweep: SweepConfig) -> int:
    return sweep.grace_seconds or 2 * sweep.heartbeat_seconds


def _target(sweep: SweepConfig) -> float:
    if sweep.sampler == "grid":
        size = math.prod(len(v) for v in sweep.grid().values())
        return min(sweep.n_trials or size, size)
    return sweep.n_trials or math.inf


# ---------------------------------------------------------------------------------------------------
# bookkeeping


def _tally(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """done: trials that count towards n_trials (complete, pruned, or failed for good; a failed trial
    that was queued again is counted through its copy)."""
    trials = list(trials)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    done = sum(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and t.number not in retried)
        for t in trials
    )
    running = sum(t.state == TrialState.RUNNING for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    return {"done": done, "running": running, "waiting": waiting}


def _counts(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    counts = {"complete": 0, "pruned": 0, "failed": 0, "running": 0, "waiting": 0}
    names = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "failed",
        TrialState.RUNNING: "running",
        TrialState.WAITING: "waiting",
    }
    for t in trials:
        counts[names[t.state]] += 1
    return counts


def _frozen(trial: optuna.Trial) -> FrozenTrial:
    return next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)


def _adopt_dead_run(frozen: FrozenTrial, run_dir: Path) -> int | None:
    """A retried trial takes over the run directory of the trial whose worker died; returns its number."""
    history = frozen.system_attrs.get("retry_history") or []
    if not history:
        return None
    old = run_dir.parent / f"trial-{history[-1]:04d}"
    if not old.is_dir():
        return None
    if run_dir.exists():
        shutil.rmtree(run_dir)
    old.rename(run_dir)
    return int(history[-1])


def _check_failures(study: optuna.Study, number: int | None, failures: int, limit: int = 3) -> int:
    """Count this process's trials failing in a row; give up after `limit` while none has ever completed
    (a missing data file or an out-of-memory model would fail every trial the same way)."""
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is None or trial.state != TrialState.FAIL:
        return 0
    failures += 1
    if failures >= limit and not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ChattuneError(
            f"{failures} trials failed in a row and none has completed; the last: {trial.user_attrs.get('error', '?')}"
        )
    return failures


def _requeue_interrupted(study: optuna.Study, number: int | None, retry: Any) -> None:
    """Ctrl-C: Optuna has marked the trial failed; queue it again as if its worker had died."""
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is not None and trial.state == TrialState.FAIL and "error" not in trial.user_attrs:
        retry(study, trial)


def _tidy_weights(study: optuna.Study, keep: str) -> None:
    """Delete the checkpoints and final weights of finished trials that are not the best (keep: best) or
    of all of them (keep: none). Trials whose worker died keep theirs: their retry resumes from them."""
    if keep == "all":
        return
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial.number if complete and keep == "best" else None
    for t in trials:
        finished = t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
            t.state == TrialState.FAIL and "error" in t.user_attrs
        )
        if finished and t.number != best and "run_dir" in t.user_attrs:
            for sub in ("checkpoints", "final"):
                shutil.rmtree(Path(t.user_attrs["run_dir"]) / sub, ignore_errors=True)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
