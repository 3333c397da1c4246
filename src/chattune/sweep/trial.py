"""One sweep trial in its own process: `python -m chattune.sweep.trial JOB.json`.

The sweep's process draws the parameters and keeps the trial's heartbeat; this process trains the
trial's run and reports each evaluation to the study's pruner through the shared storage. A fresh
process per trial means nothing carries over from one trial to the next: no module caches, no
accelerate state, no environment a previous run changed, and a trial's peak memory is its own. The
job file names the configs, the storage and the trial; the result (complete, pruned, failed,
interrupted) is written next to it as JSON, and the exit code is 0 unless the trial was interrupted.
"""

from __future__ import annotations

import ctypes
import json
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
import yaml
from rich.console import Console

from chattune.config import RunConfig
from chattune.errors import ChattuneError


def write_job(
    path: Path,
    *,
    sweep_cfg: RunConfig,
    run_cfg: RunConfig,
    study: str,
    trial_id: int,
    resume: bool,
) -> Path:
    """The job file for `main`; returns where the result will be written."""
    result = path.with_name(path.stem + ".result.json")
    result.unlink(missing_ok=True)
    job = {
        "sweep_config": sweep_cfg.to_yaml(),
        "run_config": run_cfg.to_yaml(),
        "study": study,
        "trial_id": trial_id,
        "resume": resume,
        "result": str(result),
    }
    path.write_text("", encoding="utf-8")
    path.chmod(0o600)  # the configs may hold a database URL with its password
    path.write_text(json.dumps(job), encoding="utf-8")
    return result


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the sweep process dies, so a killed worker leaves no
    orphan training on (its trial is retried from the checkpoint by another worker)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def main(argv: list[str]) -> int:
    from chattune.evaluate.during_training import suite_metrics
    from chattune.sweep.run import _grace, _pruner, storage_url
    from chattune.sweep.storage import open_storage
    from chattune.train import run as train_run
    from chattune.train.faults import TrainingInterrupted

    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result_file = Path(job["result"])
    cfg = RunConfig.model_validate(yaml.safe_load(job["sweep_config"]))
    run_cfg = RunConfig.model_validate(yaml.safe_load(job["run_config"]))
    sweep = cfg.sweep
    assert sweep is not None

    def finish(state: str, **fields: Any) -> None:
        result_file.write_text(json.dumps({"state": state, **fields}), encoding="utf-8")

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = open_storage(
            storage_url(cfg),
            heartbeat_seconds=sweep.heartbeat_seconds,
            grace_seconds=_grace(sweep),
            retry=None,
            source="sweep.storage",
        )
        study = optuna.load_study(study_name=job["study"], storage=storage, pruner=_pruner(sweep, cfg))
    trial = optuna.Trial(study, job["trial_id"])

    def on_eval(step: int, metrics: dict[str, float]) -> None:
        if sweep.metric not in metrics:
            raise ChattuneError(
                f"sweep.metric {sweep.metric} is not among the validation metrics ({', '.join(metrics)})"
            )
        value = metrics[sweep.metric]
        trial.set_user_attr("steps", step)
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"step {step}: {sweep.metric} {value:.4f}")

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    run_cfg.run_dir.mkdir(parents=True, exist_ok=True)
    with (run_cfg.run_dir / "train.log").open("a", encoding="utf-8") as log:
        try:
            # The run's own tables and progress go to its train.log; the sweep shows one line per trial.
            result = train_run(
                run_cfg,
                resume=job["resume"],
                console=Console(file=log, width=120, no_color=True),
                on_eval=on_eval,
                suite_metrics=suite_metrics if run_cfg.eval.suite_file is not None else None,
            )
        except optuna.TrialPruned as e:
            finish("pruned", message=str(e))
            return 0
        except TrainingInterrupted as e:
            finish("interrupted", message=str(e))
            return e.exit_code
        except KeyboardInterrupt:
            finish("interrupted", message="KeyboardInterrupt")
            return 130
        except Exception as e:
            message = " ".join(str(e).split()) or type(e).__name__
            finish("failed", error=f"{type(e).__name__}: {message}"[:500])
            return 0
    finish("complete", steps=result.steps, stopped_early=result.stopped_early)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
