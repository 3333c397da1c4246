"""What a run records: metrics.jsonl (one JSON object per log event), TensorBoard events, loss.png, and
the same metrics in MLflow when output.report_to names it (tracking.py).

tensorboard --logdir runs/quickstart/tensorboard
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chattune.train.tracking import MlflowRun


class MetricsLog:
    def __init__(
        self,
        run_dir: Path,
        *,
        tensorboard: bool,
        resume_step: int | None = None,
        mlflow: MlflowRun | None = None,
    ):
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.is_file():
            # Steps after the checkpoint will be trained again: drop their old records.
            kept = [
                ln
                for ln in self.path.read_text(encoding="utf-8").splitlines()
                if ln and json.loads(ln)["step"] <= resume_step
            ]
            self.path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
        elif self.path.exists():
            self.path.unlink()
        self.writer = None
        self.mlflow = mlflow
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=resume_step)

    def log(self, step: int, split: str, values: dict[str, float]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{split}/{key}", value, step)
        if self.mlflow is not None:
            self.mlflow.log(step, split, values)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln]


def plot_losses(metrics_file: Path, out: Path) -> Path | None:
    """Training and validation loss against step, plus validation token accuracy if there is any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_file) if metrics_file.is_file() else []
    train = [(r["step"], r["loss"]) for r in records if r["split"] == "train" and "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if r["split"] == "eval" and "val_loss" in r]
    acc = [
        (r["step"], r["val_token_accuracy"])
        for r in records
        if r["split"] == "eval" and "val_token_accuracy" in r
    ]
    if not train and not val:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="tab:blue", alpha=0.8)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.grid(alpha=0.3)
    if acc:
        ax2 = ax.twinx()
        ax2.plot(
            *zip(*acc, strict=True), "s--", label="validation token accuracy", color="tab:green", alpha=0.7
        )
        ax2.set_ylabel("token accuracy")
        ax2.legend(loc="upper center")
    ax.legend(loc="upper right")
    ax.set_title(metrics_file.parent.name)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
