"""Which files a training run reads: the configured ones, or what `chattune data prepare` wrote."""

from __future__ import annotations

from pathlib import Path

from chattune.config import DataConfig
from chattune.errors import ChattuneError, ConfigError


def resolve_training_files(data_cfg: DataConfig) -> tuple[Path, Path | None]:
    """The files training reads: data.train_file/val_file when set, else what `data prepare` wrote into
    data.prepare.output_dir (val.jsonl only when it has rows)."""
    if data_cfg.train_file is not None:
        return data_cfg.train_file, data_cfg.val_file
    if data_cfg.prepare is None:
        raise ConfigError(
            "data", ["set data.train_file, or data.prepare and run `chattune data prepare` first"]
        )
    out = data_cfg.prepare.output_dir
    train = out / "train.jsonl"
    if not train.is_file():
        raise ChattuneError(f"{train} does not exist: run `chattune data prepare CONFIG` first")
    val = out / "val.jsonl"
    return train, val if val.is_file() and val.stat().st_size > 0 else None
