"""`chattune train CONFIG`: fine-tune on assistant tokens with our own loop on accelerate.

    result = run(load_config("examples/quickstart.yaml"))          # or: chattune train examples/quickstart.yaml
    accelerate launch -m chattune train CONFIG                     # DDP / FSDP / DeepSpeed via accelerate config

setup (data -> packed rows -> model -> optimizer) -> train (accumulate, clip, step, log, evaluate,
checkpoint, stop early) -> finish (final/ weights, plot). Full fine-tuning and LoRA are the same loop.

Resume is exact: the data order is a pure function of (seed, epoch), the learning rate a pure function of
the step, and the checkpoint holds weights, optimizer state, generator states and the data position, so
a run killed at any point and resumed ends with the same weights as one that never stopped (on CPU).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

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

from chattune.config import RunConfig, TrainConfig
from chattune.errors import ChattuneError
from chattune.hardware import resolve_precision
from chattune.model import load_tokenizer
from chattune.train import checkpoint as ckpt
from chattune.train.batching import Row, collate, pack
from chattune.train.document_attention import use_document_attention
from chattune.train.evaluate import loss_sums, metrics_from_sums
from chattune.train.loss import SupervisedLoss
from chattune.train.monitor import MetricsLog, plot_losses
from chattune.train.schedule import lr_at
from chattune.train.setup import build_model, stats_table, tokenize_data
from chattune.train.status import RunStopped, memory_gb, write_status

EvalCallback = Callable[[int, dict[str, float]], None]  # may raise (e.g. optuna.TrialPruned) to stop the run


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    best_metric: float | None
    best_step: int | None
    stopped_early: bool
    final_metrics: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        best = (
            f", best {self.best_metric:.4f} at step {self.best_step}" if self.best_metric is not None else ""
        )
        early = " (stopped early)" if self.stopped_early else ""
        return f"{self.steps} steps{early}{best}; model in {self.run_dir / 'final'}"


def run(
    cfg: RunConfig,
    *,
    resume: bool = False,
    console: Console | None = None,
    on_eval: EvalCallback | None = None,
) -> RunResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    console = console or Console()
    precision = resolve_precision(cfg.train.precision)
    mixed_precision = {"fp32": "no"}.get(precision, precision)
    _forget_other_precision(mixed_precision)
    accelerator = Accelerator(mixed_precision=mixed_precision)
    main = accelerator.is_main_process
    run_dir = cfg.run_dir
    resume_from = _prepare_run_dir(cfg, resume, console) if main else None
    resume_from = _broadcast_path(accelerator, resume_from)
    if main:
        write_status(run_dir, "running", resumed_from=str(resume_from) if resume_from else None)
    set_seed(cfg.train.seed)

    # ---- data -------------------------------------------------------------------------------------
    tokenizer = load_tokenizer(cfg.model)
    data = tokenize_data(cfg, tokenizer)
    rows = pack(data.train, cfg.data.max_length, packing=cfg.data.packing)
    val_rows = pack(data.val, cfg.data.max_length, packing=cfg.data.packing)
    if main:
        (run_dir / "data_stats.json").write_text(
            json.dumps({"train": _stats_dict(data.train_stats), "val": _stats_dict(data.val_stats)}, indent=2)
        )
        console.print(stats_table("training data", data.train_stats))
        if data.train_stats.dropped_no_target:
            console.print(
                f"[yellow]{data.train_stats.dropped_no_target} conversations dropped: no assistant token within max_length[/]"
            )

    # ---- model and optimizer ---------------------------------------------------------------------
    model = build_model(cfg, resume_from)
    if (
        accelerator.device.type == "cpu"
    ):  # per-conversation attention for packed rows (see document_attention.py)
        use_document_attention(model)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per checkpoint write would bury ours
    loss_module = SupervisedLoss(model)
    optimizer = _optimizer(model, cfg.train)
    loss_module, optimizer = accelerator.prepare(loss_module, optimizer)
    state = ckpt.TrainState()
    if resume_from is not None:
        optimizer.load_state_dict(ckpt.load_optimizer_state(resume_from))
        state = ckpt.load_state(resume_from)
        ckpt.restore_rng(resume_from)
        console.print(f"resuming from {resume_from} (step {state.step})")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    world, rank, batch_size = accelerator.num_processes, accelerator.process_index, cfg.train.batch_size
    micro_per_epoch = math.ceil(len(rows) / (batch_size * world))
    total_steps = cfg.train.max_steps or max(
        1, math.ceil(cfg.train.epochs * micro_per_epoch / cfg.train.grad_accum)
    )
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

    metrics_log = (
        MetricsLog(
            run_dir,
            tensorboard=cfg.output.tensorboard and main,
            resume_step=state.step if resume_from else None,
        )
        if main
        else None
    )
    if main:
        console.print(
            f"{cfg.train.method} fine-tuning, {trainable:,} trainable parameters, {precision}, {world} process(es); "
            f"{len(rows)} rows/epoch -> {total_steps} steps of {batch_size}x{cfg.train.grad_accum}x{world} rows"
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
        )
        metrics = metrics_from_sums(accelerator.reduce(sums, "sum"))
        if cfg.eval.suite_file is not None:  # generation metrics on an eval suite, if configured
            from chattune.evaluate.during_training import suite_metrics

            with accelerator.autocast():  # the training precision (and LoRA's frozen weights may be bf16)
                metrics.update(suite_metrics(model, tokenizer, cfg.eval, system=data.system_prompt))
        return metrics

    def save() -> Path:
        path = _save_checkpoint(accelerator, loss_module, optimizer, tokenizer, cfg, state) if main else None
        accelerator.wait_for_everyone()
        return path  # type: ignore[return-value]

    # ---- train ------------------------------------------------------------------------------------
    params = [p for p in loss_module.parameters() if p.requires_grad]
    loss_module.train()
    running = torch.zeros(3, dtype=torch.float64, device=accelerator.device)  # loss sum, correct, targets
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
    restore_gqa = _grouped_kv_in_cpu_attention(accelerator.device)
    stop = _StopOnSigterm()
    try:
        with progress:
            while state.step < total_steps and not state.stopped_early and not stop.requested:
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
                    group["lr"] = lr
                for k, micro in enumerate(window):
                    batch = {
                        key: v.to(accelerator.device, non_blocking=True)
                        for key, v in collate(micro, tokenizer.pad_token_id).items()
                    }
                    tokens_since += sum(len(r.input_ids) for r in micro)  # real tokens, not padding
                    sync = k == len(window) - 1
                    with nullcontext() if sync else accelerator.no_sync(loss_module):
                        with accelerator.autocast():
                            loss_sum, correct = loss_module(**batch)
                        # DDP averages gradients over processes; scale back up to a sum.
                        accelerator.backward(loss_sum * (world / targets))
                    running += torch.stack(
                        [
                            loss_sum.detach().double(),
                            correct.double(),
                            torch.tensor(
                                float(len(batch["targets"])), device=accelerator.device, dtype=torch.float64
                            ),
                        ]
                    )
                grad_norm = (
                    accelerator.clip_grad_norm_(params, cfg.train.max_grad_norm)
                    if cfg.train.max_grad_norm
                    else None
                )
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                window_steps += 1
                state.micro_step += cfg.train.grad_accum
                state.epoch = state.micro_step / micro_per_epoch
                progress.update(task, completed=state.step)

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
                        "memory_gb": memory_gb(accelerator.device),
                    }
                    state.tokens_seen += tokens_since * world
                    state.targets_seen += int(totals[2])
                    running.zero_()
                    window_start, tokens_since, window_steps = time.perf_counter(), 0, 0
                    if metrics_log:
                        metrics_log.log(state.step, "train", record)
                    info = f"loss {record['loss']:.4f} lr {lr:.2e} {record['tokens_per_second']:,.0f} tok/s"
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
                if (
                    evaluated
                    or (cfg.output.save_every and state.step % cfg.output.save_every == 0)
                    or state.step == total_steps
                    or state.stopped_early
                    or stop.requested  # SIGTERM: keep everything trained so far for --resume
                ):
                    state.elapsed_seconds = time.perf_counter() - run_start
                    save()
    except BaseException as e:
        if main:
            write_status(run_dir, "stopped" if isinstance(e, KeyboardInterrupt) else "failed", error=repr(e))
        raise
    finally:
        stop.restore()
        restore_gqa()
        if metrics_log:
            metrics_log.close()
    if stop.requested:
        latest = ckpt.latest_checkpoint(run_dir / "checkpoints")
        if latest is None or ckpt.load_state(latest).step != state.step:  # signal came during a save
            state.elapsed_seconds = time.perf_counter() - run_start
            save()
        if main:
            write_status(run_dir, "stopped", step=state.step)
        accelerator.wait_for_everyone()
        # Raised, not returned: a caller such as a sweep must not take a stopped run for a finished one.
        raise RunStopped(f"{run_dir}: stopped at step {state.step} (SIGTERM); continue it with --resume")

    # ---- finish -------------------------------------------------------------------------------------
    if main:
        _write_final(cfg, state, data.system_prompt)
        plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png")
        write_status(run_dir, "finished", step=state.step)
    accelerator.wait_for_everyone()
    return RunResult(run_dir, state.step, state.best_metric, state.best_step, state.stopped_early, last_eval)


# ---------------------------------------------------------------------------------------------------
# helpers


class _StopOnSigterm:
    """SIGTERM (`kill`, the dashboard's stop button) asks the loop to stop after the current step and save
    a checkpoint, instead of dying mid-step; only the main thread can own a signal handler."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, no weight decay on biases and norm weights (1-D tensors); fused kernels where available."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.dtype == torch.float32 for p in decay + no_decay)
    return torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_epsilon,
        fused=fused,
    )


def _grouped_kv_in_cpu_attention(device: torch.device) -> Callable[[], None]:
    """On CPU, let SDPA read grouped keys/values (GQA) as they are; returns what undoes it.

    With a mask (our packed rows have one), transformers copies each key/value head to every query
    head it serves before SDPA, because some CUDA kernels need that. PyTorch's CPU flash kernel takes
    them grouped: the same attention, and on SmolLM2-135M (9 query heads, 3 key/value heads) ~240 MB
    less kept for backward at 4 x 512 tokens. transformers' switch for this is an environment variable.
    Training batches normally take per-conversation attention instead (document_attention.py); SDPA
    remains for batches with a conversation over 1,024 tokens and for generation during evaluation.
    """
    name = "TRANSFORMERS_SDPA_FORCE_GQA"
    if device.type != "cpu" or name in os.environ:  # elsewhere, or the user decided
        return lambda: None
    os.environ[name] = "1"

    def restore() -> None:
        os.environ.pop(name, None)

    return restore


def _forget_other_precision(mixed_precision: str) -> None:
    """accelerate keeps one AcceleratorState per process and refuses an Accelerator with another
    precision; a second run in the same process (tests, sweeps) may differ. The process group and
    device (PartialState) are kept."""
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed_precision:
        AcceleratorState._reset_state()


def _improved(value: float, best: float | None, greater_is_better: bool, min_delta: float) -> bool:
    if best is None:
        return True
    return value > best + min_delta if greater_is_better else value < best - min_delta


def _prepare_run_dir(cfg: RunConfig, resume: bool, console: Console) -> Path | None:
    """Create the run directory and return the checkpoint to resume from, if any."""
    run_dir = cfg.run_dir
    latest = ckpt.latest_checkpoint(run_dir / "checkpoints")
    if resume:
        if latest is None:
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
        latest = None
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    return latest if resume else None


def _broadcast_path(accelerator: object, path: Path | None) -> Path | None:
    from accelerate.utils import broadcast_object_list

    if getattr(accelerator, "num_processes", 1) == 1:
        return path
    box = [str(path) if path else None]
    broadcast_object_list(box)
    return Path(box[0]) if box[0] else None


def _save_checkpoint(
    accelerator, loss_module, optimizer, tokenizer, cfg: RunConfig, state: ckpt.TrainState
) -> Path:  # type: ignore[no-untyped-def]
    model = accelerator.unwrap_model(loss_module).model
    state_dict = {k.removeprefix("model."): v for k, v in accelerator.get_state_dict(loss_module).items()}

    def save_weights(folder: Path) -> None:
        model.save_pretrained(folder, state_dict=state_dict)
        tokenizer.save_pretrained(folder)

    root = cfg.run_dir / "checkpoints"
    path = ckpt.save_checkpoint(
        root,
        state,
        save_weights=save_weights,
        optimizer_state=optimizer.state_dict(),
        config_yaml=cfg.to_yaml(),
    )
    best = ckpt.checkpoint_dir(root, state.best_step) if state.best_step is not None else None
    ckpt.prune(root, cfg.output.keep_last, protect=best)
    return path


def _write_final(cfg: RunConfig, state: ckpt.TrainState, system_prompt: str | None) -> Path:
    """final/: the best checkpoint's model (or the last one without validation), loadable by plain
    transformers. LoRA runs get the adapter in final/adapter and, by default, the merged model in final/."""
    root = cfg.run_dir / "checkpoints"
    use_best = cfg.output.final_weights == "best" and state.best_step is not None
    source = ckpt.checkpoint_dir(root, state.best_step) if use_best else ckpt.latest_checkpoint(root)  # type: ignore[arg-type]
    assert source is not None and source.is_dir()
    final = cfg.run_dir / "final"
    shutil.rmtree(final, ignore_errors=True)
    skip = {"optimizer.pt", "rng.pt", "state.json"}
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
    return final


def _stats_dict(stats: object) -> dict[str, object]:
    d = asdict(stats)  # type: ignore[call-overload]
    d["dropped_indices"] = d["dropped_indices"][:1000]
    return d
