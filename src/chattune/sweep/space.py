"""From a search space to trial configs, and the checks that make a bad space fail at load.

    params = suggest(trial, cfg.sweep)                     # {"train.learning_rate": 3e-4, "lora.r": 16}
    trial_cfg = trial_config(cfg, params, trials_dir=..., name="trial-0003")

A trial config is the base run config with the parameters set at their dotted keys, the per-trial
step cap applied, the `sweep` section dropped and the run directory set to <sweep dir>/trials/<name>.
"""

from __future__ import annotations

import difflib
import itertools
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from chattune.config import RunConfig, describe_error
from chattune.config.sweep import CategoricalParam, FloatParam, IntParam, Scalar, SweepConfig
from chattune.errors import ConfigError

MAX_GRID_CHECKS = (
    10_000  # grid points validated at load; beyond that only a sample (validation is ~0.1 ms each)
)


def suggest(trial: Any, sweep: SweepConfig) -> dict[str, Scalar]:
    """Ask an Optuna trial for one value per parameter of the space."""
    params: dict[str, Scalar] = {}
    grid = sweep.grid() if sweep.sampler == "grid" else {}
    for key, spec in sweep.space.items():
        if key in grid:  # GridSampler hands out the values of its grid point
            params[key] = trial.suggest_categorical(key, grid[key])
        elif isinstance(spec, CategoricalParam):
            params[key] = trial.suggest_categorical(key, spec.choices)
        elif spec.values is not None:
            params[key] = trial.suggest_categorical(key, spec.values)
        elif isinstance(spec, FloatParam):
            params[key] = trial.suggest_float(key, spec.low, spec.high, log=spec.log, step=spec.step)
        else:
            params[key] = trial.suggest_int(key, spec.low, spec.high, step=spec.step, log=spec.log)
    return params


def trial_config(
    base: RunConfig, params: dict[str, Scalar], *, trials_dir: Path, name: str, cap: int | None = None
) -> RunConfig:
    """The run config of one trial; raises ValidationError if a parameter value is not valid there."""
    raw = _trial_raw(base, params, trials_dir=trials_dir, name=name, cap=cap)
    raw["output"]["overwrite"] = True  # trials/ belongs to the sweep: a leftover directory is replaced
    return RunConfig.model_validate(raw)


def best_config(base: RunConfig, params: dict[str, Scalar], *, name: str) -> dict[str, Any]:
    """The base config with the best parameters, ready to train: no sweep section, no per-trial step cap."""
    raw = _trial_raw(base, params, trials_dir=base.output.dir, name=name, cap=None)
    return dict(yaml.safe_load(RunConfig.model_validate(raw).to_yaml()))


def _trial_raw(
    base: RunConfig, params: dict[str, Scalar], *, trials_dir: Path, name: str, cap: int | None
) -> dict[str, Any]:
    # to_yaml keeps None (dropping it would turn e.g. eval.every_steps: null back into its default) and
    # leaves out the keys recipe auto chooses unless the user set them: each trial's recipe is its own.
    raw: dict[str, Any] = yaml.safe_load(base.to_yaml())
    raw.pop("sweep", None)
    for key, value in params.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:  # an optional section left out (null) is created for its searched key
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    if cap is not None:
        steps = raw["train"].get("max_steps")
        raw["train"]["max_steps"] = min(cap, steps) if isinstance(steps, int) else cap
    raw["output"] = {**raw["output"], "dir": str(trials_dir), "name": name}
    return raw


# ----------------------------------------------------------------------------------------------------
# checks at load


def validate_space(cfg: RunConfig, source: str) -> None:
    """Every space key must be a config key, and the values it can take valid there; report all at once."""
    sweep = cfg.sweep
    assert sweep is not None
    keys = config_keys(RunConfig)
    problems = []
    for key in sweep.space:
        if key.startswith("sweep.") or key.split(".")[0] == "output":
            problems.append(f"sweep.space.{key}: output and sweep settings cannot be searched")
        elif key not in keys:
            close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(f"sweep.space.{key}: not a config key{hint}")
    if not problems:
        problems += [f"sweep.space: {p}" for p in _invalid_values(cfg, sweep)]
    if cfg.data.val_file is None and cfg.data.val_fraction == 0:
        problems.append("data: a sweep needs validation data: set data.val_file or data.val_fraction > 0")
    if (
        sweep.metric.startswith("suite_")
        and cfg.eval.suite_file is None
        and "eval.suite_file" not in sweep.space
    ):
        problems.append(f"sweep.metric: {sweep.metric} needs eval.suite_file")
    if problems:
        raise ConfigError(source, list(dict.fromkeys(problems)))


def config_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted leaf key of a config class, e.g. train.learning_rate, lora.r."""
    out = []
    for name, field in model.model_fields.items():
        section = _section_class(field.annotation)
        out += config_keys(section, f"{prefix}{name}.") if section else [f"{prefix}{name}"]
    return out


def _section_class(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):  # Optional[Section]
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _invalid_values(cfg: RunConfig, sweep: SweepConfig) -> list[str]:
    """Build the trial config of every grid point (or, for random/TPE, each bound and choice of each
    parameter with the others at their lowest) and describe every validation error."""
    problems: list[str] = []
    for params in _points_to_check(sweep):
        try:
            trial_config(cfg, params, trials_dir=Path("."), name="check", cap=sweep.max_steps_per_trial)
        except ValidationError as e:
            shown = ", ".join(f"{k}={v}" for k, v in params.items())
            problems += [f"{describe_error(err, RunConfig)} (with {shown})" for err in e.errors()]
        if len(problems) >= 10:
            break
    return problems


def _points_to_check(sweep: SweepConfig) -> list[dict[str, Scalar]]:
    if sweep.sampler == "grid":
        grid = sweep.grid()
        points = itertools.islice(itertools.product(*grid.values()), MAX_GRID_CHECKS)
        return [dict(zip(grid, p, strict=True)) for p in points]
    options: dict[str, list[Scalar]] = {}
    for key, spec in sweep.space.items():
        if isinstance(spec, CategoricalParam):
            options[key] = list(spec.choices)
        elif spec.values is not None:
            options[key] = list(spec.values)
        elif isinstance(spec, IntParam | FloatParam):
            options[key] = [spec.low, spec.high]
    lowest = {key: values[0] for key, values in options.items()}
    return [lowest] + [{**lowest, key: v} for key, values in options.items() for v in values[1:]]
