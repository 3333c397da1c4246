"""The `sweep:` section of a run config: what to search, how, and within which budget.

    sweep:
      sampler: tpe
      n_trials: 12
      max_steps_per_trial: 30
      space:
        train.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
        lora.r: {type: categorical, choices: [8, 16, 32]}

Kept free of `chattune.config` imports: config.py imports this module at its top, so importing it back
would be a cycle (the shared base class lives in chattune.config.section). That every key of `space` names
a real config key is checked by `chattune.sweep.space.validate_space`, which needs the whole RunConfig.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, ConfigDict, Field, model_validator

from chattune.config.metrics import greater_is_better
from chattune.config.section import Section

Scalar = str | int | float | bool | None


class _Section(Section):
    # Sweep parameters accept aliases (values/choices) by either name.
    model_config = ConfigDict(**Section.model_config, populate_by_name=True)


class FloatParam(_Section):
    """A real number from [low, high] (log: uniform in log space, the right choice for learning rates),
    or from an explicit list of values (needed by grid search)."""

    type: Literal["float"]
    low: float | None = Field(None, description="Smallest value (with high).")
    high: float | None = Field(None, description="Largest value (with low).")
    log: bool = Field(False, description="Sample uniformly in log space (low must be > 0).")
    step: float | None = Field(
        None, gt=0, description="Discretise [low, high] in steps of this size (not with log)."
    )
    values: list[float] | None = Field(
        None,
        min_length=1,
        validation_alias=AliasChoices("values", "choices"),
        description="Explicit values (alias: choices).",
    )

    @model_validator(mode="after")
    def _range_or_values(self) -> FloatParam:
        _check_range(self.low, self.high, self.values, self.log, self.step)
        return self


class IntParam(_Section):
    """An integer from low..high (both included) in steps of `step`, or from an explicit list."""

    type: Literal["int"]
    low: int | None = Field(None, description="Smallest value (with high).")
    high: int | None = Field(None, description="Largest value, included (with low).")
    step: int = Field(1, ge=1, description="Spacing of the values from low.")
    log: bool = Field(False, description="Sample uniformly in log space (low must be > 0, step 1).")
    values: list[int] | None = Field(
        None,
        min_length=1,
        validation_alias=AliasChoices("values", "choices"),
        description="Explicit values (alias: choices).",
    )

    @model_validator(mode="after")
    def _range_or_values(self) -> IntParam:
        _check_range(self.low, self.high, self.values, self.log, None if self.step == 1 else self.step)
        return self

    def grid(self) -> list[int]:
        if self.values is not None:
            return list(self.values)
        assert self.low is not None and self.high is not None
        return list(range(self.low, self.high + 1, self.step))


class CategoricalParam(_Section):
    """One of a list of values: strings, numbers, booleans or null (e.g. schedulers, LoRA ranks)."""

    type: Literal["categorical"]
    choices: list[Scalar] = Field(
        min_length=1,
        validation_alias=AliasChoices("choices", "values"),
        description="The values to choose from (alias: values).",
    )


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def _check_range(
    low: float | None, high: float | None, values: Sequence[float] | None, log: bool, step: float | None
) -> None:
    if values is not None:
        if low is not None or high is not None:
            raise ValueError("give low/high or values, not both")
        return
    if low is None or high is None:
        raise ValueError("give low and high (or an explicit list of values)")
    if low > high:
        raise ValueError(f"low ({low}) is greater than high ({high})")
    if log and low <= 0:
        raise ValueError("log: true needs low > 0")
    if log and step is not None:
        raise ValueError("step and log: true cannot be combined")


class SweepConfig(_Section):
    sampler: Literal["grid", "random", "tpe"] = Field(
        "tpe",
        description="grid: every combination of the space; random: independent draws; tpe: Bayesian (Optuna's TPE).",
    )
    space: dict[str, ParamSpec] = Field(
        min_length=1,
        description="Search space keyed by dotted config key (train.learning_rate, lora.r, train.scheduler, ...). "
        "Each entry: {type: float, low, high, log}, {type: int, low, high, step}, or {type: categorical, choices}.",
    )
    metric: str = Field(
        "val_loss",
        description="Validation metric to optimise: val_loss, val_perplexity, val_token_accuracy or a suite_* metric.",
    )
    direction: Literal["minimize", "maximize"] | None = Field(
        None, description="Default: minimize for val_loss and val_perplexity, maximize for the others."
    )
    n_trials: int | None = Field(
        None,
        ge=1,
        description="Trials to finish in total, over every worker and restart (grid: default and at most the grid size).",
    )
    timeout_minutes: float | None = Field(
        None,
        gt=0,
        description="Start no new trial after this many minutes of this process (a running trial finishes).",
    )
    max_steps_per_trial: int | None = Field(
        None,
        ge=1,
        description="Step cap for every trial, applied as train.max_steps (the smaller one if train.max_steps is searched).",
    )
    pruner: Literal["none", "median", "hyperband", "threshold"] = Field(
        "median",
        description="Stop hopeless trials from their intermediate validation metrics: median (worse than the median of "
        "earlier trials at the same step), hyperband, threshold (worse than pruner_threshold), or none.",
    )
    pruner_warmup_evals: int = Field(1, ge=0, description="Evaluations of a trial before it may be pruned.")
    pruner_startup_trials: int = Field(
        2, ge=0, description="median: trials that finish before any is pruned."
    )
    pruner_threshold: float | None = Field(
        None, description="threshold: prune when the metric is above it (minimize) or below it (maximize)."
    )
    storage: str | None = Field(
        None,
        description="Optuna storage URL shared by all workers (e.g. postgresql://user:pass@host/db). "
        "Default: sqlite:///<dir>/study.db.",
    )
    study_name: str | None = Field(
        None, description="Study name in the storage. Default: the run name (config file stem)."
    )
    dir: Path | None = Field(
        None,
        description="Sweep directory: trials/, trials.csv, plots, summary.html, best.yaml. Default: <output.dir>/<name>-sweep.",
    )
    seed: int = Field(
        0,
        description="Seeds the sampler (grid order, random and TPE draws) of the first process; workers add their own offset.",
    )
    heartbeat_seconds: int = Field(
        20, ge=1, description="A running trial records a heartbeat this often (RDB storages)."
    )
    grace_seconds: int | None = Field(
        120,
        ge=1,
        description="A running trial without a heartbeat for this long is marked failed and retried. null: 2x heartbeat.",
    )
    max_retries: int = Field(2, ge=0, description="Times a trial whose worker died is retried.")
    keep_weights: Literal["all", "best", "none"] = Field(
        "best",
        description="Trial weights (checkpoints/, final/) to keep once trials finish: all, the best trial's, or none.",
    )

    @property
    def resolved_direction(self) -> Literal["minimize", "maximize"]:
        if self.direction is not None:
            return self.direction
        return "maximize" if greater_is_better(self.metric) else "minimize"

    @model_validator(mode="after")
    def _consistent(self) -> SweepConfig:
        problems = []
        if not (self.metric.startswith(("val_", "suite_")) and _has_direction(self.metric)):
            problems.append(
                f"metric {self.metric!r} is not val_loss, val_perplexity, val_token_accuracy or suite_*"
            )
        if self.sampler == "grid":
            for key, spec in self.space.items():
                if isinstance(spec, FloatParam) and spec.values is None:
                    problems.append(
                        f"space.{key}: grid search needs a finite list of floats: give values: [...] instead of low/high"
                    )
        elif self.n_trials is None and self.timeout_minutes is None:
            problems.append(
                f"sampler {self.sampler} needs n_trials or timeout_minutes (a grid stops by itself)"
            )
        if self.pruner == "threshold" and self.pruner_threshold is None:
            problems.append("pruner threshold needs pruner_threshold")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def grid(self) -> dict[str, list[Scalar]]:
        """Values of every parameter for grid search (keys in the order of `space`)."""
        out: dict[str, list[Scalar]] = {}
        for key, spec in self.space.items():
            if isinstance(spec, CategoricalParam):
                out[key] = list(spec.choices)
            elif isinstance(spec, IntParam):
                out[key] = list(spec.grid())
            else:
                assert spec.values is not None
                out[key] = list(spec.values)
        return out


def _has_direction(metric: str) -> bool:
    try:
        greater_is_better(metric)
    except ValueError:
        return False
    return True
