"""`chattune train CONFIG`: fine-tune on assistant tokens with our own loop on accelerate.

    result = run(load_config("examples/quickstart.yaml"))          # or: chattune train examples/quickstart.yaml
    accelerate launch -m chattune train CONFIG                     # DDP / FSDP / DeepSpeed via accelerate config

setup (data -> packed rows -> model -> optimizer) -> train (accumulate, clip, step, log, evaluate,
checkpoint, stop early) -> finish (final/ weights, plot). Full fine-tuning and LoRA are the same loop.

Resume is exact: the data order is a pure function of (seed, epoch), the learning rate a pure function of
the step, and the checkpoint holds weights, optimizer state, generator states and the data position, so
a run killed at any point and resumed ends with the same weights as one that never stopped (on CPU).
Faults a long run meets (faults.py, checkpoint.py): SIGTERM/SIGINT finish the step, checkpoint and exit
with 128 + the signal; checkpoint writes are crash-safe and a damaged newest checkpoint falls back to an
older one; steps with a non-finite loss or gradient are skipped and counted (train.max_nonfinite).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import statistics
import time
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from chattune.config import EvalConfig, RunConfig, TrainConfig
from chattune.errors import ChattuneError
from chattune.hardware import resolve_precision
from chattune.model import load_tokenizer
from chattune.train import checkpoint as ckpt
from chattune.train import cpu_kernels
from chattune.train.additions import added_examples
from chattune.train.batching import Row, collate, pack
from chattune.train.common_directions import guard_for_run
from chattune.train.faults import NonFiniteError, StopOnSignal, TrainingInterrupted, peak_memory
from chattune.train.loss import SupervisedLoss
from chattune.train.monitor import MetricsLog, plot_losses
from chattune.train.recipe import (
    PACE_CHECK_EVERY,
    PACE_WINDOW,
    Choice,
    describe,
    paced_epochs,
    paces_epochs,
)
from chattune.train.schedule import lr_at
from chattune.train.setup import (
    apply_recipe,
    build_model,
    copies_line,
    data_changes,
    micro_batches_per_epoch,
    print_recipe,
    stats_table,
    tokenize_data,
)
from chattune.train.setup import total_steps as run_total_steps
from chattune.train.sharding import full_optimizer_state, load_optimizer_state
from chattune.train.status import write_status
from chattune.train.tracking import MlflowRun
from chattune.train.validation import loss_sums, metrics_from_sums

if TYPE_CHECKING:
    from accelerate import Accelerator  # untyped: Any to mypy, named here for the reader
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from chattune.data.tokenize import TokenizeStats
    from chattune.train.common_directions import CommonDirections

EvalCallback = Callable[[int, dict[str, float]], None]  # may raise (e.g. optuna.TrialPruned) to stop the run
# Generation metrics on eval.suite_file at each evaluation: chattune.evaluate.during_training.suite_metrics. Passed in,
# not imported: evaluation sits above training (it compares trained models), so training must not import it.
SuiteMetrics = Callable[
    ["PreTrainedModel", "PreTrainedTokenizerBase", EvalConfig, str | None], dict[str, float]
]


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    best_metric: float | None
    best_step: int | None
    stopped_early: bool
    final_metrics: dict[str, float] = field(default_factory=dict)
    final_checkpoint: str | None = None  # the checkpoint final/ was written from

    def summary(self) -> str:
        best = (
            f", best {self.best_metric:.4f} at step {self.best_step}" if self.best_metric is not None else ""
        )
        early = " (stopped early)" if self.stopped_early else ""
        source = f" (from {self.final_checkpoint})" if self.final_checkpoint else ""
        return f"{self.steps} steps{early}{best}; model in {self.run_dir / 'final'}{source}"


def run(
    cfg: RunConfig,
    *,
    resume: bool = False,
    console: Console | None = None,
    on_eval: EvalCallback | None = None,
    suite_metrics: SuiteMetrics | None = None,
) -> RunResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if cfg.eval.suite_file is not None and suite_metrics is None:
        raise ChattuneError(
            "eval.suite_file is set but no suite scorer was passed: call "
            "run(cfg, suite_metrics=chattune.evaluate.during_training.suite_metrics) (`chattune train` does)"
        )
    console = console or Console()
    precision = resolve_precision(cfg.train.precision)
    mixed_precision = {"fp32": "no"}.get(precision, precision)
    # accelerate takes a torchrun launch without CUDA for N independent single processes unless told
    # it is on CPU: each would then train alone on the same rows and write the same run directory.
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    try:
        accelerator = Accelerator(mixed_precision=mixed_precision, cpu=multi_cpu)
    except ValueError as e:  # accelerate keeps one precision per process and refuses a second
        if "already been initialized" not in str(e):
            raise
        raise ChattuneError(
            f"this process has already trained in another precision, and accelerate keeps one per process: "
            f"start train.precision={precision} in a new process (`chattune train`, sweep trials and dashboard "
            "jobs each get their own)"
        ) from e
    main = accelerator.is_main_process
    run_dir = cfg.run_dir
    candidates = _prepare_run_dir(cfg, resume, console) if main else []
    candidates = _broadcast_paths(accelerator, candidates)
    if main:  # read by the dashboard; a process that dies without a word is caught by its pid check
        write_status(run_dir, "running", resumed=resume)
    set_seed(cfg.train.seed)

    # ---- data -------------------------------------------------------------------------------------
    tokenizer = load_tokenizer(cfg.model)
    data = tokenize_data(cfg, tokenizer)
    cfg, choices = apply_recipe(cfg, data, accelerator.num_processes)
    if resume and candidates:  # the run goes on with what it started with (a timed probe may differ)
        cfg, choices = _recorded_recipe(run_dir, cfg, choices)
    if main:
        print_recipe(choices, console)
        _record_recipe(run_dir, cfg, choices)
        _check_same_data(run_dir, data.records, bool(resume and candidates), console)
    if main and data.copies_left_out:
        console.print(copies_line(data.copies_left_out, cfg.data.max_copies))
    # after the recipe, which is resolved on the user's data alone
    data.train += added_examples(cfg, tokenizer, data, accelerator, console)
    rows = pack(data.train, cfg.data.max_length, packing=cfg.data.packing)
    val_rows = pack(data.val, cfg.data.max_length, packing=cfg.data.packing)
    if main:
        (run_dir / "data_stats.json").write_text(
            json.dumps(
                {
                    "train": _stats_dict(data.train_stats),
                    "val": _stats_dict(data.val_stats),
                    "copies_left_out": [{"record": r, "repeats": f} for r, f in data.copies_left_out],
                },
                indent=2,
            )
        )
        console.print(stats_table("training data", data.train_stats))
        if data.train_stats.dropped_no_target:
            console.print(
                f"[yellow]{data.train_stats.dropped_no_target} conversations dropped: no assistant token within max_length[/]"
            )

    # ---- model and optimizer ---------------------------------------------------------------------
    model, resume_from, kernels = _build_resumable(
        cfg, candidates, console if main else None, accelerator.device
    )
    if main:
        console.print(
            "chattune kernels: " + (", ".join(kernels) if kernels else "none (plain transformers and peft)")
        )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per checkpoint write would bury ours
    # apply() changes nothing, and so lists nothing, unless the kernels fit this model: then the loss may
    # project the scored tokens itself too.
    loss_module = SupervisedLoss(model, own_head=bool(kernels))
    share_prefixes = cfg.train.share_prefixes and loss_module.shares_prefixes()
    optimizer = _optimizer(model, cfg.train)
    loss_module, optimizer = accelerator.prepare(loss_module, optimizer)
    sharding = _sharding(accelerator, console if main else None)
    guard = guard_for_run(cfg, model, tokenizer, resume_from, sharding, console if main else None)
    state = ckpt.TrainState()
    if resume_from is not None:
        if sharding != "deepspeed":
            load_optimizer_state(
                loss_module,
                _torch_optimizer(optimizer),
                ckpt.load_optimizer_state(resume_from),
                sharded=sharding == "fsdp",
            )
        state = ckpt.load_state(resume_from)
        ckpt.restore_rng(resume_from)
        console.print(f"resuming from {resume_from} (step {state.step})")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    world, rank, batch_size = accelerator.num_processes, accelerator.process_index, cfg.train.batch_size
    micro_per_epoch = micro_batches_per_epoch(len(rows), batch_size, world)
    total_steps = run_total_steps(cfg.train, micro_per_epoch)
    orders: dict[int, list[int]] = {}

    def micro_batch(m: int) -> list[Row]:
        """Rows for micro-batch m (counted across epochs) on this process: a pure function of m."""
        epoch, i = divmod(m, micro_per_epoch)
        if epoch not in orders:
            g = torch.Generator().manual_seed(cfg.train.seed + epoch)
            orders[epoch] = torch.randperm(len(rows), generator=g).tolist()
        start = (i * world + rank) * batch_size
        picked = orders[epoch][start : start + batch_size] or orders[epoch][:batch_size]
        return [rows[k] for k in picked]

    tracker = (
        MlflowRun.start(cfg, run_dir, resumed=resume_from is not None)
        if main and "mlflow" in cfg.output.report_to
        else None
    )
    metrics_log = (
        MetricsLog(
            run_dir,
            tensorboard="tensorboard" in cfg.output.report_to,
            resume_step=state.step if resume_from else None,
            mlflow=tracker,
        )
        if main
        else None
    )
    if tracker:
        console.print(f"MLflow run {tracker.run_id} in {tracker.uri}", highlight=False)
    if main:
        console.print(
            f"{cfg.train.method} fine-tuning, {trainable:,} trainable parameters, {precision}, {world} process(es); "
            f"{len(rows)} rows/epoch -> {total_steps} steps of {batch_size}x{cfg.train.grad_accum}x{world} rows"
        )
        if share_prefixes:
            console.print(
                _prefix_saving_line(
                    [micro_batch(m) for m in range(min(micro_per_epoch, 50))], tokenizer.pad_token_id
                )
            )

    def evaluate() -> dict[str, float]:
        mine = val_rows[rank::world]
        batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)][: cfg.eval.max_batches]
        sums = loss_sums(
            loss_module,
            batches,
            pad_id=tokenizer.pad_token_id,
            device=accelerator.device,
            autocast=accelerator.autocast,
            share_prefixes=share_prefixes,
        )
        metrics = metrics_from_sums(accelerator.reduce(sums, "sum"))
        if suite_metrics is not None:  # generation metrics on an eval suite, if configured
            with accelerator.autocast():  # the training precision (and LoRA's frozen weights may be bf16)
                metrics.update(suite_metrics(model, tokenizer, cfg.eval, data.system_prompt))
        return metrics

    def save() -> None:
        _save_checkpoint(
            accelerator, loss_module, optimizer, tokenizer, cfg, state, sharding == "fsdp", guard
        )
        accelerator.wait_for_everyone()

    # ---- train ------------------------------------------------------------------------------------
    params = [p for p in loss_module.parameters() if p.requires_grad]
    loss_module.train()
    running = torch.zeros(3, dtype=torch.float64, device=accelerator.device)  # loss sum, correct, targets
    step_sums = torch.zeros_like(running)  # the same for the current optimizer step
    window_start, tokens_since, window_steps = time.perf_counter(), 0, 0
    run_start = time.perf_counter() - state.elapsed_seconds
    last_eval: dict[str, float] = {}
    progress = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=not main,
    )
    task = progress.add_task("train", total=total_steps, completed=state.step, info="")
    restore_gqa = cpu_kernels.grouped_kv_in_cpu_attention(accelerator.device) if kernels else lambda: None
    # fp16 has a loss scaler that skips overflowing steps itself (and lowers the scale); elsewhere we do.
    skip_nonfinite = accelerator.scaler is None
    # A fresh run may give fewer passes on a slow machine (recipe.paced_epochs); a resumed one goes on with
    # the passes its recipe.json recorded.
    pacing = next((c for c in choices if c.key == "train.epochs"), None)  # the data's passes, to pace
    if resume_from is not None or not paces_epochs(cfg):
        pacing = None
    step_seconds: deque[float] = deque(maxlen=PACE_WINDOW)
    step_end = time.perf_counter()
    try:
        budget = cfg.train.time_budget_minutes
        with progress, StopOnSignal() as stop:
            while state.step < total_steps and not state.stopped_early:
                if budget and _past_budget(accelerator, time.perf_counter() - run_start, budget):
                    state.stopped_early = True  # finished below like an early stop
                    if main:
                        progress.console.print(
                            f"[yellow]train.time_budget_minutes={budget:g} reached at step {state.step}[/]"
                        )
                    if not ckpt.checkpoint_dir(run_dir / "checkpoints", state.step).is_dir():
                        state.elapsed_seconds = time.perf_counter() - run_start
                        save()
                    break
                window = [
                    micro_batch(m) for m in range(state.micro_step, state.micro_step + cfg.train.grad_accum)
                ]
                # Normalise by the targets of the whole accumulated (and distributed) batch, so
                # accumulation gives the same loss and gradient as one large batch.
                targets = sum(r.n_targets for rows_ in window for r in rows_)
                if world > 1:
                    targets = int(accelerator.reduce(torch.tensor(targets, device=accelerator.device), "sum"))
                lr = lr_at(state.step, cfg.train, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
                for k, micro in enumerate(window):
                    batch = {
                        key: v.to(accelerator.device, non_blocking=True)
                        for key, v in collate(
                            micro, tokenizer.pad_token_id, share_prefixes=share_prefixes
                        ).items()
                    }
                    tokens_since += sum(len(r.input_ids) for r in micro)  # real tokens, not padding
                    sync = k == len(window) - 1
                    with nullcontext() if sync else accelerator.no_sync(loss_module):
                        with accelerator.autocast():
                            loss_sum, correct = loss_module(**batch)
                        # DDP averages gradients over processes; scale back up to a sum.
                        accelerator.backward(loss_sum * (world / targets))
                    step_sums += torch.stack(
                        [
                            loss_sum.detach().double(),
                            correct.double(),
                            torch.tensor(
                                float(len(batch["targets"])), device=accelerator.device, dtype=torch.float64
                            ),
                        ]
                    )
                # The norm is always computed (an infinite limit clips nothing: the gradients are
                # multiplied by exactly 1.0), because a non-finite norm is how a bad step shows.
                grad_norm = accelerator.clip_grad_norm_(params, cfg.train.max_grad_norm or math.inf)
                # One small collective agrees on what every process saw: a non-finite step, a signal.
                flags = torch.tensor(
                    [
                        float(
                            skip_nonfinite
                            and not (torch.isfinite(grad_norm) and torch.isfinite(step_sums[0]))
                        ),
                        float(stop.signum is not None),
                    ],
                    device=accelerator.device,
                )
                if world > 1:
                    flags = accelerator.reduce(flags, "sum")
                nonfinite, stop_requested = bool(flags[0] > 0), bool(flags[1] > 0)
                if nonfinite:  # skip the update; the batch counts as seen
                    state.nonfinite_steps += 1
                    state.nonfinite_in_row += 1
                    if main:
                        progress.console.print(
                            f"[yellow]step {state.step + 1}: non-finite loss or gradient, update skipped "
                            f"({state.nonfinite_in_row} in a row, {state.nonfinite_steps} in all)[/]"
                        )
                    if state.nonfinite_in_row >= cfg.train.max_nonfinite:
                        raise NonFiniteError(
                            f"{state.nonfinite_in_row} optimizer steps in a row had a non-finite loss or gradient "
                            f"(train.max_nonfinite={cfg.train.max_nonfinite}) at step {state.step + 1}; lower "
                            "train.learning_rate, set train.max_grad_norm, or use bf16/fp32 instead of fp16; "
                            "--resume continues from the last checkpoint"
                        )
                else:
                    optimizer.step()
                    if guard is not None:
                        guard.restore()
                    state.nonfinite_in_row = 0
                    running += step_sums
                step_sums.zero_()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                window_steps += 1
                state.micro_step += cfg.train.grad_accum
                state.epoch = state.micro_step / micro_per_epoch
                progress.update(task, completed=state.step)
                now = time.perf_counter()
                step_seconds.append(now - step_end)
                step_end = now
                if pacing and state.step % PACE_CHECK_EVERY == 0 and state.step <= total_steps // 2:
                    seconds, per_step = _slowest(
                        accelerator, [now - run_start, statistics.median(step_seconds)]
                    )
                    paced = paced_epochs(
                        pacing, micro_per_epoch / cfg.train.grad_accum, state.step, seconds, per_step
                    )
                    if paced.value != cfg.train.epochs:
                        cfg.train.epochs = float(paced.value)
                        total_steps = run_total_steps(cfg.train, micro_per_epoch)
                        progress.update(task, total=total_steps)
                        choices = [paced if c.key == paced.key else c for c in choices]
                        if main:
                            progress.console.print(
                                f"train.epochs = {paced.value:g}: {paced.why} -> {total_steps} steps"
                            )
                            _record_recipe(run_dir, cfg, choices)

                if state.step % cfg.train.log_every == 0 or state.step == total_steps:
                    totals = accelerator.reduce(running, "sum").tolist()
                    elapsed = time.perf_counter() - window_start
                    record = {
                        "loss": totals[0] / max(totals[2], 1.0),
                        "token_accuracy": totals[1] / max(totals[2], 1.0),
                        "lr": lr,
                        "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
                        "epoch": state.epoch,
                        "tokens_per_second": tokens_since * world / elapsed,
                        "trained_tokens_per_second": totals[2] / elapsed,
                        "seconds_per_step": elapsed / window_steps,
                        "nonfinite_steps": state.nonfinite_steps,
                        **peak_memory(),
                    }
                    state.tokens_seen += tokens_since * world
                    state.targets_seen += int(totals[2])
                    running.zero_()
                    window_start, tokens_since, window_steps = time.perf_counter(), 0, 0
                    if metrics_log:
                        metrics_log.log(state.step, "train", record)
                    info = (
                        f"loss {record['loss']:.4f} lr {lr:.2e} {record['tokens_per_second']:,.0f} tok/s "
                        f"peak RSS {record['peak_rss_gb']:.2f} GB"
                        + (
                            f" CUDA {record['cuda_max_allocated_gb']:.2f} GB"
                            if "cuda_max_allocated_gb" in record
                            else ""
                        )
                    )
                    progress.update(task, info=info)
                    if main and not console.is_terminal:  # the live bar is hidden in logs: print a line
                        console.print(f"step {state.step}/{total_steps}: {info}")

                every = cfg.eval.every_steps
                evaluated = bool(val_rows) and (
                    state.step == total_steps or (every is not None and state.step % every == 0)
                )
                if evaluated:
                    last_eval = evaluate()
                    value = last_eval[cfg.eval.metric]
                    if _improved(value, state.best_metric, cfg.eval.greater_is_better, cfg.eval.min_delta):
                        state.best_metric, state.best_step, state.evals_without_improvement = (
                            value,
                            state.step,
                            0,
                        )
                    else:
                        state.evals_without_improvement += 1
                        if cfg.eval.patience and state.evals_without_improvement >= cfg.eval.patience:
                            state.stopped_early = True
                    if metrics_log:
                        metrics_log.log(state.step, "eval", last_eval)
                    if main:
                        progress.console.print(
                            f"step {state.step}: "
                            + ", ".join(f"{k} {v:.4f}" for k, v in last_eval.items() if k != "val_tokens")
                            + (" [yellow](stopping early: no improvement)[/]" if state.stopped_early else "")
                        )
                    if on_eval is not None:
                        on_eval(state.step, last_eval)
                    # A signal that arrived during the evaluation stops the run here, not a step later.
                    late = torch.tensor([float(stop.signum is not None)], device=accelerator.device)
                    if world > 1:
                        late = accelerator.reduce(late, "sum")
                    stop_requested = stop_requested or bool(late[0] > 0)
                if (
                    evaluated
                    or (cfg.output.save_every and state.step % cfg.output.save_every == 0)
                    or state.step == total_steps
                    or state.stopped_early
                    or stop_requested
                ):
                    state.elapsed_seconds = time.perf_counter() - run_start
                    save()
                if stop_requested:
                    name = signal.Signals(stop.signum or signal.SIGTERM).name
                    raise TrainingInterrupted(
                        f"stopped by {name} after step {state.step}/{total_steps}; checkpoint "
                        f"{ckpt.checkpoint_dir(run_dir / 'checkpoints', state.step)}; continue with --resume",
                        stop.signum or signal.SIGTERM,
                    )
    except BaseException as e:
        if main:
            stopped = isinstance(e, TrainingInterrupted | KeyboardInterrupt)
            write_status(run_dir, "stopped" if stopped else "failed", step=state.step, error=str(e))
            if tracker:
                tracker.end("KILLED" if stopped else "FAILED")
        raise
    finally:
        restore_gqa()
        if metrics_log:
            metrics_log.close()

    # ---- finish -------------------------------------------------------------------------------------
    final_checkpoint = None
    if main:
        final_checkpoint = _write_final(cfg, state, data.system_prompt)
        plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png")
        write_status(run_dir, "finished", step=state.step)
        if tracker:
            reports = ("final", "loss.png", "metrics.jsonl", "config.yaml", "status.json")
            tracker.end("FINISHED", artifacts=[run_dir / name for name in reports])
    accelerator.wait_for_everyone()
    return RunResult(
        run_dir,
        state.step,
        state.best_metric,
        state.best_step,
        state.stopped_early,
        last_eval,
        final_checkpoint,
    )


# ---------------------------------------------------------------------------------------------------
# helpers


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, no weight decay on biases and norm weights (1-D tensors); fused kernels where available.
    Each group carries `lr_scale`, its share of the scheduled rate (train.layer_lr_decay)."""
    by_group: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    scales = layer_lr_scales([name for name, _ in named], cfg.layer_lr_decay)
    for name, p in named:
        by_group.setdefault((p.ndim >= 2, scales[name]), []).append(p)
    groups = [
        {"params": params, "weight_decay": cfg.weight_decay if decays else 0.0, "lr_scale": scale}
        for (decays, scale), params in sorted(by_group.items(), key=lambda kv: (not kv[0][0], -kv[0][1]))
    ]
    fused = all(p.dtype == torch.float32 for _, p in named)
    return torch.optim.AdamW(
        groups,
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_epsilon,
        fused=fused,
    )


def _improved(value: float, best: float | None, greater_is_better: bool, min_delta: float) -> bool:
    if best is None:
        return True
    return value > best + min_delta if greater_is_better else value < best - min_delta


def _check_same_data(run_dir: Path, records: dict[str, str], resuming: bool, console: Console) -> None:
    """A resumed run warns, naming file and line, when its data differs from what the run started on
    (the file was edited since): it goes on, but no longer ends as an uninterrupted run would."""
    saved = run_dir / "data_records.json"
    if resuming and saved.is_file():
        change = data_changes(json.loads(saved.read_text(encoding="utf-8")), records)
        if change:
            console.print(
                f"[yellow]warning[/]: --resume: the training data differs from the run's start: {change}. "
                "Training goes on with the data as it is now.",
                highlight=False,
            )
        return
    saved.write_text(json.dumps(records), encoding="utf-8")


def _prepare_run_dir(cfg: RunConfig, resume: bool, console: Console) -> list[Path]:
    """Create the run directory and return the checkpoints to resume from, newest sound one first."""
    run_dir = cfg.run_dir
    latest = ckpt.latest_checkpoint(run_dir / "checkpoints")
    found: list[Path] = []
    if resume:
        found = ckpt.sound_checkpoints(
            run_dir / "checkpoints", lambda m: console.print(f"[yellow]warning: {m}[/]")
        )
        if not found:
            console.print(
                f"[yellow]--resume: no complete checkpoint in {run_dir / 'checkpoints'}; starting from scratch[/]"
            )
    elif latest is not None or (run_dir / "final").exists():
        if not cfg.output.overwrite:
            raise ChattuneError(
                f"{run_dir} already holds a run: pass --resume to continue it, output.overwrite=true to replace it, "
                "or output.name=NEW to start another"
            )
        for sub in ("checkpoints", "final", "tensorboard"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    return found


def _broadcast_paths(accelerator: object, paths: list[Path]) -> list[Path]:
    from accelerate.utils import broadcast_object_list

    if getattr(accelerator, "num_processes", 1) == 1:
        return paths
    box = [[str(p) for p in paths]]
    broadcast_object_list(box)
    return [Path(p) for p in box[0]]


def _build_resumable(
    cfg: RunConfig, candidates: list[Path], console: Console | None, device: torch.device
) -> tuple[PreTrainedModel, Path | None, list[str]]:
    """The model, from the newest checkpoint that loads (a checkpoint whose weights have the wrong
    shapes passes the file checks and fails only here), else from the base model; and the kernels."""
    for path in candidates:
        try:
            model, kernels = build_model(cfg, path, device)
            return model, path, kernels
        except (RuntimeError, ValueError, OSError) as e:
            if console is not None:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                console.print(f"[yellow]warning: checkpoint {path} does not load ({first}); falling back[/]")
    model, kernels = build_model(cfg, None, device)
    return model, None, kernels


def _save_checkpoint(
    accelerator: Accelerator,
    loss_module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    tokenizer: PreTrainedTokenizerBase,
    cfg: RunConfig,
    state: ckpt.TrainState,
    fsdp: bool,
    guard: CommonDirections | None = None,
) -> None:
    """Every process calls this: under FSDP and DeepSpeed ZeRO-3 gathering the full state dict is a
    collective (a rank-0-only call would hang), as is gathering FSDP's sharded optimizer state; the main
    process then writes them."""
    model = accelerator.unwrap_model(loss_module).model
    state_dict = {k.removeprefix("model."): v for k, v in accelerator.get_state_dict(loss_module).items()}
    optimizer_state = full_optimizer_state(loss_module, _torch_optimizer(optimizer), sharded=fsdp)
    if not accelerator.is_main_process:
        return
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:  # skipped steps should make this impossible; never let such weights reach a checkpoint
        raise NonFiniteError(f"weights {', '.join(bad[:3])} are not finite at step {state.step}; not saved")
    tensors = [v for v in state_dict.values()] + [
        t for s in optimizer_state["state"].values() for t in s.values() if isinstance(t, torch.Tensor)
    ]
    bytes_needed = sum(t.numel() * t.element_size() for t in tensors)

    def save_weights(folder: Path) -> None:
        model.save_pretrained(folder, state_dict=state_dict)
        tokenizer.save_pretrained(folder)
        if guard is not None:
            guard.save(folder)

    root = cfg.run_dir / "checkpoints"
    ckpt.save_checkpoint(
        root,
        state,
        save_weights=save_weights,
        optimizer_state=optimizer_state,
        config_yaml=cfg.to_yaml(),
        bytes_needed=bytes_needed,
    )
    best = ckpt.checkpoint_dir(root, state.best_step) if state.best_step is not None else None
    ckpt.prune(root, cfg.output.keep_last, protect=best)


def _sharding(accelerator: Accelerator, console: Console | None) -> str:
    """ "fsdp", "deepspeed" or "none", saying where a launch config asked for sharding it does not get."""
    import os

    from accelerate.utils import DistributedType

    kind = {DistributedType.FSDP: "fsdp", DistributedType.DEEPSPEED: "deepspeed"}.get(
        accelerator.distributed_type, "none"
    )
    asked = [n for n in ("FSDP", "DEEPSPEED") if os.environ.get(f"ACCELERATE_USE_{n}", "").lower() == "true"]
    if console and asked and kind == "none":
        console.print(
            f"[yellow]warning[/]: the launch config asks for {asked[0]}, but accelerate runs it only on GPUs: "
            f"these {accelerator.num_processes} process(es) train data-parallel (DDP), each with a full copy",
            highlight=False,
        )
    if console and kind == "deepspeed":
        console.print(
            "[yellow]warning[/]: DeepSpeed ZeRO partitions the optimizer state; chattune's checkpoints keep the "
            "full weights but not that state, so --resume restarts the optimizer (FSDP resumes exactly)",
            highlight=False,
        )
    return kind


_LAYER_INDEX = re.compile(r"\.(?:layers|h|blocks|layer)\.(\d+)\.")


def layer_lr_scales(names: list[str], decay: float) -> dict[str, float]:
    """Each parameter's share of the learning rate: decay^(distance from the top decoder layer). Parameters
    outside the numbered layers take 1 (final norm, output head), except embeddings, which sit below
    layer 0. Names are matched as transformers and peft spell them (`model.layers.3.`, `transformer.h.3.`)."""
    indices = {name: int(m.group(1)) for name in names if (m := _LAYER_INDEX.search(name))}
    if decay == 1.0 or not indices:
        return dict.fromkeys(names, 1.0)
    top = max(indices.values())
    scales = {}
    for name in names:
        if name in indices:
            scales[name] = decay ** (top - indices[name])
        else:
            scales[name] = decay ** (top + 1) if "embed" in name else 1.0
    return scales


def _torch_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's wrapper (torch.distributed's state-dict helpers need it)."""
    inner = getattr(optimizer, "optimizer", optimizer)
    return inner if isinstance(inner, torch.optim.Optimizer) else optimizer


def _final_is_best(cfg: RunConfig) -> bool:
    """`output.final_weights: auto` takes the best checkpoint only where the user asked for selection
    (early stopping, or a metric of their choosing), else the last: a cosine schedule's last steps anneal
    the weights, and on a small validation split the "best" step is noise. Two of fifteen benchmark runs
    had their lowest validation loss at step 100 of 125-132 (by 0.0005 and 0.0017); their last weights
    scored 1.5 and 2.4 points more held-out."""
    if cfg.output.final_weights != "auto":
        return cfg.output.final_weights == "best"
    return cfg.eval.patience is not None or cfg.user_set("eval", "metric")


def _write_final(cfg: RunConfig, state: ckpt.TrainState, system_prompt: str | None) -> str:
    """final/: the last or the best checkpoint's model (_final_is_best), loadable by plain transformers;
    returns the checkpoint's name. LoRA runs get the adapter in final/adapter and, by default, the merged
    model in final/."""
    root = cfg.run_dir / "checkpoints"
    best_step = state.best_step if _final_is_best(cfg) else None
    source = ckpt.checkpoint_dir(root, best_step) if best_step is not None else ckpt.latest_checkpoint(root)
    assert source is not None and source.is_dir()
    final = cfg.run_dir / "final"
    shutil.rmtree(final, ignore_errors=True)
    skip = {"optimizer.pt", "rng.pt", "state.json", ckpt.MANIFEST}
    is_adapter = (source / "adapter_config.json").is_file()
    target = final / "adapter" if is_adapter else final
    target.mkdir(parents=True)
    for f in source.iterdir():
        if f.name not in skip and f.is_file():
            shutil.copy2(f, target / f.name)
    if is_adapter and cfg.output.merge_lora and cfg.train.method == "lora":
        from peft import PeftModel

        from chattune.model import load_model

        merged = PeftModel.from_pretrained(load_model(cfg.model), str(target)).merge_and_unload()
        merged.save_pretrained(final)
        load_tokenizer(cfg.model).save_pretrained(final)
    (final / "chattune.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    (final / "chat_defaults.json").write_text(
        json.dumps(
            {"system_prompt": system_prompt, "base_model": cfg.model.name, "from_checkpoint": source.name},
            indent=2,
        )
    )
    return source.name


def _prefix_saving_line(micro_batches: list[list[Row]], pad_id: int) -> str:
    """What shared prefixes save, over the first micro-batches of the run."""
    real = sum(len(r.input_ids) for rows in micro_batches for r in rows)
    computed = sum(collate(rows, pad_id, share_prefixes=True)["input_ids"].numel() for rows in micro_batches)
    return (
        f"shared prefixes: each micro-batch computes its conversations' common beginnings once "
        f"({1 - computed / max(real, 1):.0%} fewer tokens; train.share_prefixes)"
    )


def _slowest(accelerator: Accelerator, seconds: list[float]) -> list[float]:
    """The slowest process's clocks, so every process makes the same decision."""
    if accelerator.num_processes == 1:
        return seconds
    slowest: list[float] = accelerator.reduce(
        torch.tensor(seconds, device=accelerator.device), "max"
    ).tolist()
    return slowest


def _past_budget(accelerator: Accelerator, elapsed: float, budget_minutes: float) -> bool:
    """Every process stops at the same step: the decision is the slowest clock's."""
    over = torch.tensor([float(elapsed > budget_minutes * 60)], device=accelerator.device)
    if accelerator.num_processes > 1:
        over = accelerator.reduce(over, "max")
    return bool(over.item())


def _recorded_recipe(run_dir: Path, cfg: RunConfig, choices: list[Choice]) -> tuple[RunConfig, list[Choice]]:
    recorded = run_dir / "recipe.json"
    if not recorded.is_file():
        return cfg, choices
    recorded_choices = {
        c["key"]: Choice(c["key"], c["value"], c["why"]) for c in json.loads(recorded.read_text())
    }
    for c in choices:
        if c.key in recorded_choices and recorded_choices[c.key].value != c.value:
            section, key = c.key.split(".")
            setattr(getattr(cfg, section), key, recorded_choices[c.key].value)
    # A value the run changed as it trained (epochs paced to the machine) keeps the reason it was changed.
    return cfg, [
        recorded_choices[c.key]
        if c.key in recorded_choices and recorded_choices[c.key].value != c.value
        else c
        for c in choices
    ]


def _record_recipe(run_dir: Path, cfg: RunConfig, choices: list[Choice]) -> None:
    """The run's config.yaml says what the recipe chose (as comments: loading it again lets auto choose
    again, for the same data the same values), and recipe.json keeps the choices for tools."""
    if not choices:
        return
    header = "".join(f"# {line}\n" for line in ["train.recipe=auto chose:", *describe(choices)])
    (run_dir / "config.yaml").write_text(header + cfg.to_yaml(), encoding="utf-8")
    (run_dir / "recipe.json").write_text(
        json.dumps([{"key": c.key, "value": c.value, "why": c.why} for c in choices], indent=2)
    )


def _stats_dict(stats: TokenizeStats) -> dict[str, object]:
    d = asdict(stats)
    d["dropped_indices"] = d["dropped_indices"][:1000]
    return d
