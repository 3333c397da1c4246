"""Helpers for the dashboard tests."""

from pathlib import Path

from chattune.config import RunConfig
from chattune.train.status import write_status
from tests.helpers import write_jsonl


def fake_run(root: Path, name: str, *, state: str | None, lr: float = 1e-4, steps: int = 5) -> Path:
    run = root / name
    run.mkdir(parents=True)
    cfg = RunConfig.model_validate(
        {"output": {"name": name, "dir": str(root)}, "train": {"learning_rate": lr}}
    )
    (run / "config.yaml").write_text(cfg.to_yaml())
    records = [
        {"step": s, "split": "train", "loss": 3.0 - 0.1 * s, "lr": lr, "peak_rss_gb": 1.0 + s}
        for s in range(1, steps + 1)
    ]
    records.append({"step": steps, "split": "eval", "val_loss": 2.5, "val_token_accuracy": 0.4})
    write_jsonl(run / "metrics.jsonl", records)
    if state is not None:
        write_status(run, state)  # type: ignore[arg-type]
    return run
