"""`chattune train CONFIG` with `train.backend: openai`: fine-tune an OpenAI model on the run's data.

    result = run(load_config("examples/openai.yaml"), confirm=lambda q: True)

check (data inspect's checks, on train and validation files) -> estimate (tokens, epochs, cost) and
confirm -> upload (idempotent) -> create the job (or find the one an interrupted attempt created) ->
follow: status, events and metrics into metrics.jsonl, TensorBoard and the progress bar, the same as a
local run -> on success, the result file's metrics and the fine-tuned model id into the run directory.

Everything the run knows lives in <run>/openai_job.json, written after each step, so that Ctrl-C (which
detaches and leaves the job running), `--resume` (which reattaches) and `--cancel` work from any point.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chattune.config import RunConfig
from chattune.data.validate import OPENAI_MAX_TOKENS_PER_EXAMPLE, openai_estimate
from chattune.errors import ChattuneError, ConfigError
from chattune.hosted.client import api_errors, make_client
from chattune.hosted.upload import Prepared, prepare_file, upload, validation_error

if TYPE_CHECKING:
    from collections.abc import Callable

    from openai import OpenAI

STATE_FILE = "openai_job.json"
ACTIVE = ("validating_files", "queued", "running")
FILE_PARAMS = {"training_file": "train", "validation_file": "validation"}


@dataclass
class HostedResult:
    run_dir: Path
    job_id: str
    status: str
    fine_tuned_model: str | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        if self.status == "succeeded":
            shown = ", ".join(f"{k} {v:.4f}" for k, v in self.final_metrics.items())
            return (
                f"job {self.job_id} succeeded: model {self.fine_tuned_model}"
                + (f" ({shown})" if shown else "")
                + f"; run in {self.run_dir}"
            )
        if self.status in ACTIVE:
            return (
                f"detached from job {self.job_id} ({self.status}); it keeps running: reattach with --resume, "
                "stop it with --cancel"
            )
        return f"job {self.job_id} {self.status}"


def run(
    cfg: RunConfig,
    *,
    resume: bool = False,
    cancel: bool = False,
    confirm: Callable[[str], bool],
    console: Console | None = None,
) -> HostedResult:
    console = console or Console()
    run_dir = cfg.run_dir
    state = load_state(run_dir)
    if cancel:
        with make_client(cfg.openai) as client:  # its keep-alive connections close on return
            return cancel_job(client, run_dir, state, console)
    if state.get("job_id") and not resume:
        if not cfg.output.overwrite:
            raise ChattuneError(
                f"{run_dir} already holds OpenAI job {state['job_id']} ({state.get('status')}): pass --resume to "
                "reattach, --cancel to cancel it, output.overwrite=true or output.name=NEW to start another"
            )
        for name in (STATE_FILE, "metrics.jsonl", "result.csv", "loss.png"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
        state = {}
    if resume and not state.get("job_id"):
        console.print(f"[yellow]--resume: {run_dir} has no OpenAI job yet; starting one[/]")
    with make_client(cfg.openai) as client:
        if not state.get("job_id"):
            state = start(client, cfg, state, confirm, console)
        return follow(client, cfg, state, console)


# ----------------------------------------------------------------------------------------------------
# check, estimate, upload, create


def start(
    client: OpenAI, cfg: RunConfig, state: dict[str, Any], confirm: Callable[[str], bool], console: Console
) -> dict[str, Any]:
    from chattune.data.training_files import resolve_training_files

    train_path, val_path = resolve_training_files(cfg.data)
    model = cfg.model.name
    with console.status("checking the data the way OpenAI will ..."):
        train = prepare_file(train_path, model)
        val = prepare_file(val_path, model) if val_path is not None else None
    if val is not None and val.kind != train.kind:
        raise ConfigError(
            "data", [f"data.val_file: holds {val.kind} examples but data.train_file {train.kind}"]
        )
    method = cfg.openai.method if cfg.openai.method != "auto" else train.kind
    if method != train.kind:
        raise ConfigError(
            "openai", [f"openai.method: {method}, but {train_path} holds {train.kind} examples"]
        )
    hyper = hyperparameters(cfg, method, console)
    estimate = cost_estimate(cfg, train, hyper["n_epochs"])
    console.print(estimate_table(train, val, method, estimate))
    if not confirm(f"Start a {method} fine-tuning job on {model}?"):
        raise ChattuneError(
            "not confirmed: nothing uploaded, no job created (pass --yes to skip the question)"
        )

    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    state.update(backend="openai", model=model, method=method, hyperparameters=hyper, estimate=estimate)
    files = state.setdefault("files", {})
    for role, prepared in (("train", train), ("validation", val)):
        if prepared is None:
            continue
        with console.status(f"uploading {prepared.source} ({len(prepared.content):,} bytes) ..."):
            files[role] = upload(
                client, prepared, recorded=files.get(role), poll_seconds=cfg.openai.poll_seconds
            )
        console.print(
            f"{role} file {files[role]['id']} ({'already uploaded' if files[role]['reused'] else 'uploaded'})"
        )
        save_state(run_dir, state)
    _write_chat_defaults(run_dir, train.system_prompt, model, None)

    params: dict[str, Any] = {
        "model": model,
        "training_file": files["train"]["id"],
        "seed": cfg.train.seed,
        "method": {"type": method, method: {"hyperparameters": hyper}},
    }
    if "validation" in files:
        params["validation_file"] = files["validation"]["id"]
    if cfg.openai.suffix:
        params["suffix"] = cfg.openai.suffix
    # The same data and settings give the same key: a job created by an attempt that died before it could
    # record the id is found by it instead of being created twice.
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]
    params["metadata"] = {"chattune_run": run_dir.name[:512], "chattune_key": key}
    with api_errors("creating the fine-tuning job"):
        job = next(
            (j for j in client.fine_tuning.jobs.list(metadata={"chattune_key": key}) if j.status in ACTIVE),
            None,
        )
        if job is not None:
            console.print(
                f"found job {job.id} ({job.status}) started earlier with the same data and settings"
            )
        else:
            job = client.fine_tuning.jobs.create(**params)
            console.print(f"created job {job.id}")
    state.update(job_id=job.id, status=job.status, created_at=job.created_at)
    save_state(run_dir, state)
    return state


def hyperparameters(cfg: RunConfig, method: str, console: Console) -> dict[str, Any]:
    """openai.* when set, else the train.* values the config sets explicitly, else auto."""
    o, t = cfg.openai, cfg.train
    explicit = t.model_fields_set
    n_epochs: int | str = o.n_epochs
    if n_epochs == "auto" and "epochs" in explicit:
        if t.epochs != int(t.epochs):
            raise ConfigError("train", [f"train.epochs: OpenAI trains whole epochs, got {t.epochs}"])
        n_epochs = int(t.epochs)
    batch_size: int | str = o.batch_size
    if batch_size == "auto" and "batch_size" in explicit:
        batch_size = t.batch_size
    if "learning_rate" in explicit and o.learning_rate_multiplier == "auto":
        console.print(
            "[yellow]train.learning_rate is not sent: OpenAI takes a multiplier of its own base rate "
            "(openai.learning_rate_multiplier); leaving it on auto[/]"
        )
    hyper: dict[str, Any] = {
        "n_epochs": n_epochs,
        "batch_size": batch_size,
        "learning_rate_multiplier": o.learning_rate_multiplier,
    }
    if method == "dpo":
        hyper["beta"] = o.beta
    return hyper


def cost_estimate(cfg: RunConfig, train: Prepared, n_epochs: int | str) -> dict[str, Any]:
    """Billed tokens = epochs x the training file's tokens (each example counted up to 16,385)."""
    default_epochs, _ = openai_estimate(train.tokens)
    epochs = n_epochs if isinstance(n_epochs, int) else default_epochs
    billed = epochs * sum(min(OPENAI_MAX_TOKENS_PER_EXAMPLE, n) for n in train.tokens)
    price = cfg.openai.training_price_per_million.get(cfg.model.name)
    return {
        "examples": len(train.tokens),
        "tokens": sum(train.tokens),
        "epochs": epochs,
        "epochs_auto": not isinstance(n_epochs, int),
        "billed_tokens": billed,
        "usd_per_million": price,
        "usd": billed / 1e6 * price if price is not None else None,
        "counted_with": train.counter,
    }


def estimate_table(train: Prepared, val: Prepared | None, method: str, est: dict[str, Any]) -> Table:
    t = Table(title=f"OpenAI {method} fine-tuning", show_header=False)
    t.add_row("training examples", f"{est['examples']:,} from {train.source}")
    if val is not None:
        t.add_row("validation examples", f"{len(val.tokens):,} from {val.source}")
    if train.fixes:
        t.add_row("fixed before upload", ", ".join(f"{k} x{v}" for k, v in train.fixes.items()))
    t.add_row("tokens per epoch", f"{est['tokens']:,} ({est['counted_with']})")
    t.add_row(
        "epochs", f"{est['epochs']}" + (" (OpenAI's default for this size)" if est["epochs_auto"] else "")
    )
    t.add_row("billed tokens", f"{est['billed_tokens']:,}")
    if est["usd"] is not None:
        t.add_row(
            "estimated cost",
            f"${est['usd']:,.{2 if est['usd'] >= 0.01 else 4}f} at ${est['usd_per_million']}/1M tokens",
        )
    else:
        t.add_row("estimated cost", "no price known: add it under openai.training_price_per_million")
    return t


# ----------------------------------------------------------------------------------------------------
# follow


def follow(client: OpenAI, cfg: RunConfig, state: dict[str, Any], console: Console) -> HostedResult:
    """Poll the job until it ends, logging its events and metrics; Ctrl-C detaches and leaves it running."""
    from chattune.train.monitor import MetricsLog, plot_losses
    from chattune.train.tracking import MlflowRun

    run_dir, job_id = cfg.run_dir, state["job_id"]
    reattached = "last_event_id" in state
    # a detached job (Ctrl-C) leaves its MLflow run RUNNING; --resume continues it
    tracker = MlflowRun.start(cfg, run_dir, resumed=reattached) if "mlflow" in cfg.output.report_to else None
    metrics_log = MetricsLog(
        run_dir,
        tensorboard="tensorboard" in cfg.output.report_to,
        resume_step=state.get("logged_step", 0) if reattached else None,
        mlflow=tracker,
    )
    progress = Progress(
        TextColumn(f"[bold]{job_id}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task(
        "job", total=state.get("total_steps"), completed=state.get("last_step", 0), info=""
    )
    try:
        with progress:
            while True:
                with api_errors(f"following job {job_id}"):
                    job = client.fine_tuning.jobs.retrieve(job_id)
                    events = new_events(client, job_id, state.get("last_event_id"))
                for ev in events:
                    _handle_event(ev, state, metrics_log, progress, task, console)
                    # Recorded together: an event cut short by Ctrl-C is handled again on --resume, and
                    # metrics.jsonl is cut back to the last event that was recorded whole.
                    state["last_event_id"], state["logged_step"] = ev.id, state.get("last_step", 0)
                state["status"] = job.status
                progress.update(task, info=job.status)
                save_state(run_dir, state)
                if job.status not in ACTIVE:
                    break
                time.sleep(cfg.openai.poll_seconds)
    except KeyboardInterrupt:
        save_state(run_dir, state)
        result = HostedResult(run_dir, job_id, state.get("status", "running"))
        console.print(f"[yellow]{result.summary()}[/]")
        return result
    except Exception:
        if tracker:
            tracker.end("FAILED")
        raise
    finally:
        metrics_log.close()

    if tracker and job.status != "succeeded":
        tracker.end("FAILED" if job.status == "failed" else "KILLED")
    if job.status == "failed":
        err = job.error
        message = f"OpenAI job {job_id} failed: {err.message if err else 'no reason given'}"
        if err and err.code:
            message += f" [{err.code}]"
        state["error"] = err.model_dump() if err else None
        save_state(run_dir, state)
        role = FILE_PARAMS.get(err.param or "") if err else None
        raise validation_error(message, state.get("files", {}).get(role) if role else None)
    if job.status == "cancelled":
        raise ChattuneError(f"OpenAI job {job_id} was cancelled")
    result = finish(client, cfg, state, job, console, plot_losses)
    if tracker:
        tracker.end("FINISHED", artifacts=[run_dir / n for n in ("loss.png", "metrics.jsonl", "config.yaml")])
    return result


def new_events(client: OpenAI, job_id: str, last_id: str | None) -> list[Any]:
    """Events after `last_id`, oldest first. The API lists newest first; the SDK pages on with `after`."""
    fresh = []
    for ev in client.fine_tuning.jobs.list_events(job_id, limit=100):
        if ev.id == last_id:
            break
        fresh.append(ev)
    return fresh[::-1]


def _handle_event(
    ev: Any, state: dict[str, Any], log: Any, progress: Progress, task: Any, console: Console
) -> None:
    data = ev.data if isinstance(ev.data, dict) else {}
    if ev.type != "metrics" or "step" not in data:
        style = {"error": "red", "warn": "yellow"}.get(ev.level, "dim")
        progress.console.print(f"[{style}]{ev.message}[/]", highlight=False)
        return
    step = int(data["step"])
    train = {
        k: float(data[src])
        for k, src in (("loss", "train_loss"), ("token_accuracy", "train_mean_token_accuracy"))
        if data.get(src) is not None
    }
    val = {
        k: float(data[src])
        for k, src in (("val_loss", "valid_loss"), ("val_token_accuracy", "valid_mean_token_accuracy"))
        if data.get(src) is not None
    }
    if train:
        log.log(step, "train", train)
    if val:
        log.log(step, "eval", val)
    if data.get("total_steps"):
        state["total_steps"] = int(data["total_steps"])
    state["last_step"] = step
    info = " ".join(f"{k} {v:.4f}" for k, v in {**train, **val}.items())
    progress.update(task, total=state.get("total_steps"), completed=step, info=info)
    if not console.is_terminal:  # the live bar is hidden in logs: print a line
        progress.console.print(f"step {step}/{state.get('total_steps', '?')}: {info}", highlight=False)


def finish(
    client: OpenAI, cfg: RunConfig, state: dict[str, Any], job: Any, console: Console, plot: Any
) -> HostedResult:
    """Record the fine-tuned model, its checkpoints and the result file's metrics; plot the losses."""
    run_dir = cfg.run_dir
    final: dict[str, float] = {}
    with api_errors(f"reading the results of job {job.id}"):
        if job.result_files:
            text = client.files.content(job.result_files[0]).text
            (run_dir / "result.csv").write_text(text, encoding="utf-8")
            final = result_metrics(text)
        checkpoints = [
            {
                "step": c.step_number,
                "model": c.fine_tuned_model_checkpoint,
                "metrics": c.metrics.model_dump(exclude_none=True),
            }
            for c in client.fine_tuning.jobs.checkpoints.list(job.id)
        ]
    state.update(
        fine_tuned_model=job.fine_tuned_model,
        trained_tokens=job.trained_tokens,
        finished_at=job.finished_at,
        result_files=list(job.result_files),
        result_metrics=final,
        checkpoints=checkpoints,
    )
    save_state(run_dir, state)
    defaults = (
        json.loads((run_dir / "chat_defaults.json").read_text(encoding="utf-8"))
        if (run_dir / "chat_defaults.json").is_file()
        else {}
    )
    _write_chat_defaults(run_dir, defaults.get("system_prompt"), cfg.model.name, job.fine_tuned_model)
    plot(run_dir / "metrics.jsonl", run_dir / "loss.png")
    return HostedResult(run_dir, job.id, job.status, job.fine_tuned_model, final)


def result_metrics(text: str) -> dict[str, float]:
    """The last value of each column of a result file (step,train_loss,train_accuracy,valid_loss,...)."""
    last: dict[str, float] = {}
    for row in csv.DictReader(io.StringIO(text)):
        for k, v in row.items():
            if k and k != "step" and v not in (None, ""):
                try:
                    last[k.strip()] = float(v)
                except ValueError:
                    continue
    return last


def cancel_job(client: OpenAI, run_dir: Path, state: dict[str, Any], console: Console) -> HostedResult:
    if not state.get("job_id"):
        raise ChattuneError(f"{run_dir} has no OpenAI job to cancel")
    with api_errors(f"cancelling job {state['job_id']}"):
        job = client.fine_tuning.jobs.cancel(state["job_id"])
    state["status"] = job.status
    save_state(run_dir, state)
    console.print(f"cancelled job {job.id} ({job.status})")
    return HostedResult(run_dir, job.id, job.status)


# ----------------------------------------------------------------------------------------------------
# the run directory


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def save_state(run_dir: Path, state: dict[str, Any]) -> None:
    # Written whole to a temporary file and renamed, so Ctrl-C mid-write cannot leave half a record.
    tmp = run_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(run_dir / STATE_FILE)


def _write_chat_defaults(run_dir: Path, system_prompt: str | None, base: str, fine_tuned: str | None) -> None:
    (run_dir / "chat_defaults.json").write_text(
        json.dumps(
            {"system_prompt": system_prompt, "base_model": base, "fine_tuned_model": fine_tuned}, indent=2
        ),
        encoding="utf-8",
    )
