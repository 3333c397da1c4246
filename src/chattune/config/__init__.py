"""Every settings schema in chattune, validated at load: the bottom layer of the package.

    from chattune.config import load_config
    cfg = load_config("examples/quickstart.yaml", ["train.learning_rate=1e-4"])

This package imports pydantic, PyYAML and `chattune.errors`, and nothing else from chattune; every stage
imports its settings from here (an import-linter contract in the test suite holds that). One module per
section: `run` (the run config and its loader), `model`, `prepare` (data.prepare), `augment`, `teacher`,
`sweep`, `hosted` (openai:), `export`, `serve`, and `metrics` (every metric's name and direction).
"""

from chattune.config.augment import AugmentConfig, AugmentOps
from chattune.config.export import ExportConfig
from chattune.config.hosted import OpenAIConfig
from chattune.config.metrics import METRICS, Metric, greater_is_better
from chattune.config.model import EMBEDDED_MODEL, ModelConfig
from chattune.config.prepare import PrepareConfig
from chattune.config.run import (
    RECIPE_KEYS,
    DataConfig,
    EvalConfig,
    LoraConfig,
    OutputConfig,
    RunConfig,
    TrainConfig,
    apply_override,
    describe_error,
    load_config,
)
from chattune.config.section import Section
from chattune.config.serve import ServeConfig
from chattune.config.sweep import SweepConfig
from chattune.config.teacher import TeacherConfig

__all__ = [
    "EMBEDDED_MODEL",
    "METRICS",
    "RECIPE_KEYS",
    "AugmentConfig",
    "AugmentOps",
    "DataConfig",
    "EvalConfig",
    "ExportConfig",
    "LoraConfig",
    "Metric",
    "ModelConfig",
    "OpenAIConfig",
    "OutputConfig",
    "PrepareConfig",
    "RunConfig",
    "Section",
    "ServeConfig",
    "SweepConfig",
    "TeacherConfig",
    "TrainConfig",
    "apply_override",
    "describe_error",
    "greater_is_better",
    "load_config",
]
