"""Run configuration: one YAML per run, typed, nested by concern, validated at load.

    cfg = load_config("examples/quickstart.yaml", ["train.learning_rate=1e-4", "train.max_steps=20"])

Every default lives here, next to its documentation. Unknown keys are rejected with the closest valid
name; every problem in a file is reported at once with its dotted path. Relative paths are relative to
the directory you run chattune from. The resolved config is saved into every run directory and checkpoint,
so a checkpoint is all that `eval`, `chat` and `serve` need.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator, model_validator

from chattune.config.augment import AugmentConfig
from chattune.config.hosted import OpenAIConfig
from chattune.config.metrics import SelectionMetric, greater_is_better
from chattune.config.model import ModelConfig
from chattune.config.prepare import PrepareConfig
from chattune.config.section import Section
from chattune.config.sweep import SweepConfig
from chattune.errors import ConfigError


class DataConfig(Section):
    train_file: Path | None = Field(None, description="OpenAI-messages JSONL to train on.")
    val_file: Path | None = Field(
        None, description="Validation JSONL. Without it, val_fraction of train_file is held out."
    )
    val_fraction: float = Field(
        0.05, ge=0.0, lt=1.0, description="Share of train_file held out when no val_file is given."
    )
    max_length: int = Field(
        1024, ge=16, description="Tokens per sequence; longer conversations are cut at the end."
    )
    max_copies: int | None = Field(
        None,
        ge=1,
        description="Keep at most this many copies of a training conversation whose messages repeat another's "
        "exactly; the rest are left out before the validation split, each named in the run's data_stats.json. "
        "null keeps every copy. Unset under train.recipe=auto: 1 (each conversation trained once, as `data prepare` leaves it).",
    )
    packing: bool = Field(
        True,
        description="Pack several conversations into each row, kept apart by per-sequence position ids "
        "(no cross-attention between them). Off: one conversation per row, padded.",
    )
    train_on_roles: list[Literal["assistant", "user", "system", "tool"]] = Field(
        ["assistant"],
        description="Roles whose message contents carry the loss: [assistant] trains the replies only; "
        "[assistant, user] also learns the user's requests (Axolotl's train_on_inputs, LLaMA-Factory's "
        "train_on_prompt). Rehearsal follows it; validation loss is on the replies alone.",
    )
    prepare: PrepareConfig | None = Field(
        None,
        description="Sources and cleaning for `chattune data prepare`, which writes train.jsonl/val.jsonl to "
        "prepare.output_dir; training reads them when train_file is not set.",
    )

    @field_validator("train_on_roles", mode="before")
    @classmethod
    def _one_role_is_a_list(cls, roles: object) -> object:
        return [roles] if isinstance(roles, str) else roles

    @field_validator("train_on_roles")
    @classmethod
    def _replies_are_trained(cls, roles: list[str]) -> list[str]:
        if "assistant" not in roles:
            raise ValueError(
                f"must include assistant (the replies are what fine-tuning teaches), got {roles}"
            )
        return list(dict.fromkeys(roles))


class TrainConfig(Section):
    backend: Literal["local", "openai"] = Field(
        "local",
        description="local: train here on accelerate. openai: OpenAI's hosted fine-tuning of model.name "
        "(e.g. gpt-4o-mini-2024-07-18), configured in the openai section.",
    )
    method: Literal["full", "lora", "qlora"] = Field(
        "full", description="Full fine-tuning, LoRA, or QLoRA (4-bit base, CUDA only)."
    )
    recipe: Literal["auto", "manual"] = Field(
        "auto",
        description="auto: choose epochs, learning rate, batch size, gradient accumulation, warm-up and "
        "data.max_length from the data, the model size and the method (chattune/train/recipe.py); keys you "
        "set yourself are kept. manual: the defaults below, as written.",
    )
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate (after warm-up).")
    batch_size: int = Field(4, ge=1, description="Rows per device per micro-step.")
    grad_accum: int = Field(
        1, ge=1, description="Micro-steps per optimizer step; loss is normalised over all of them."
    )
    max_steps: int | None = Field(
        None, ge=1, description="Optimizer steps to run; overrides epochs when set."
    )
    epochs: float = Field(1.0, gt=0, description="Passes over the training data, when max_steps is not set.")
    warmup_steps: int | None = Field(
        None, ge=0, description="Linear warm-up steps. Exclusive with warmup_ratio."
    )
    warmup_ratio: float | None = Field(None, ge=0, lt=1, description="Warm-up as a share of total steps.")
    scheduler: Literal["linear", "cosine", "constant", "step"] = Field(
        "cosine", description="Learning-rate decay after warm-up."
    )
    min_lr_ratio: float = Field(
        0.0, ge=0, le=1, description="linear/cosine decay to this share of the peak rate."
    )
    step_size: int = Field(
        100, ge=1, description="scheduler=step: multiply the rate by gamma every step_size steps."
    )
    gamma: float = Field(0.5, gt=0, le=1, description="scheduler=step: decay factor.")
    weight_decay: float = Field(
        0.0, ge=0, description="AdamW weight decay (not applied to biases and norms)."
    )
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_epsilon: float = Field(1e-8, gt=0)
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="Clip the global gradient norm; null disables."
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 autocast on GPUs and CPUs that support it (AVX512-BF16/AMX), else fp32.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward: less memory, ~30% slower."
    )
    cpu_kernels: Literal["auto", "off"] = Field(
        "auto",
        description="auto: chattune's fused kernels (per-conversation attention on CPU, fused LoRA, gated "
        "MLP, output head and loss, LoRA dropout) on the architectures and library versions they were tested "
        "on; off: plain transformers and peft everywhere (the same loss and gradients, slower).",
    )

    @field_validator("cpu_kernels", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        # YAML 1.1 reads a bare `off` as false (and `on` as true)
        return {False: "off", True: "auto"}.get(value, value) if isinstance(value, bool) else value

    share_prefixes: bool = Field(
        True,
        description="With per-conversation attention (CPU), compute a micro-batch's common conversation "
        "beginnings (a shared system prompt) once: the same loss and gradients, fewer tokens computed "
        "(chattune/train/batching.py).",
    )
    compile: bool = Field(
        False,
        description="torch.compile each decoder layer (fused elementwise kernels); the first steps pay the compilation. "
        "Full fine-tuning: much less activation memory. LoRA on CPU: leave off (the fused LoRA layers run eager).",
    )
    time_budget_minutes: float | None = Field(
        None,
        gt=0,
        description="Stop training (with a checkpoint and final/) when this much time has passed; with "
        "recipe=auto, epochs are also fitted to it from a short throughput probe.",
    )
    freeze_embeddings: bool = Field(
        False,
        description="Full fine-tuning: keep the token embeddings (and the output head, tied or not) as they are. "
        "A small set then changes less of what the model knew, and steps are cheaper. recipe=auto turns it on "
        "for full fine-tuning when unset (README, Recipe auto). LoRA never trains them.",
    )
    layer_lr_decay: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Each decoder layer's learning rate is this times the one above it (the top layer gets "
        "train.learning_rate, the bottom one decay^(layers-1), trained embeddings one step less): the lower "
        "layers, which hold more of what the model knew, move less; 1 gives every layer the same rate. On the "
        "benchmark 0.95 kept more general answers and learned the domain less (README, Recipe auto).",
    )
    common_directions: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Full fine-tuning: keep each decoder weight's action on the input directions general text "
        "has in common at the base model's (the top principal directions of its inputs on the base model's own "
        "general answers, as many as hold this share of their energy; chattune/train/common_directions.py); "
        "0 turns it off. On the benchmark 0.6 kept more general answers and learned the domain less "
        "(README, Recipe auto).",
    )
    neftune_alpha: float | None = Field(
        None,
        gt=0,
        description="NEFTune: uniform noise of scale alpha / sqrt(row length x hidden size) on the input "
        "embeddings during training (transformers' hook; TRL's neftune_noise_alpha; the paper used 5). "
        "With packing the row is several conversations, so the same alpha is a smaller noise.",
    )
    rehearsal: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Add this share (of the training conversations) of the base model's own answers to "
        "general requests, asked without a system prompt, so tuning on one domain keeps what the model "
        "could do elsewhere (chattune/train/rehearsal.py). recipe=auto chooses it when unset.",
    )
    scope_pairs: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Add this share (of the training conversations, at most one per shipped general request and no more than the data's "
        "own redirected conversations) "
        "of general requests asked under the data's system prompt and answered with the data's own redirect "
        "reply, found in the data (chattune/train/scope_pairs.py); none when the data redirects nothing. "
        "recipe=auto chooses 0.1 where the data redirects, 0 elsewhere, when unset.",
    )
    scope_pairs_both_ways: bool = Field(
        False,
        description="With scope pairs, also ask the data's own redirected requests with no system prompt, "
        "answered with the opening of the base model's own reply, so the redirect stays with the prompt: "
        "off-topic requests asked with no system prompt are answered, not redirected, at a possible cost "
        "to out of scope and clarify under the prompt (chattune/train/scope_pairs.py).",
    )
    clarify_pairs: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Add this share (of the training conversations, at most one per shipped vague request and no "
        "more than the data's own clarifying conversations) of vague requests asked under the data's system "
        "prompt and answered with the data's own clarifying question, found in the data "
        "(chattune/train/clarify_pairs.py); none when the data asks nothing back. recipe=auto chooses 0.1 where "
        "the data asks, 0 elsewhere, when unset.",
    )
    seed: int = Field(42, description="Seeds data order, dropout and initialisation of LoRA weights.")
    log_every: int = Field(5, ge=1, description="Optimizer steps between logged training metrics.")
    max_nonfinite: int = Field(
        5,
        ge=1,
        description="Stop after this many optimizer steps in a row with a non-finite loss or gradient "
        "(each is skipped: no update, counted in metrics as nonfinite_steps).",
    )

    @model_validator(mode="after")
    def _one_warmup(self) -> TrainConfig:
        if self.warmup_steps is not None and self.warmup_ratio is not None:
            raise ValueError("set warmup_steps or warmup_ratio, not both")
        return self


class LoraConfig(Section):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear",
        description="Module names to adapt, or 'all-linear' for every linear layer but the output head.",
    )


class EvalConfig(Section):
    every_steps: int | None = Field(
        50, ge=1, description="Validate every N optimizer steps (and always at the end)."
    )
    max_batches: int | None = Field(
        None, ge=1, description="Cap validation batches per evaluation (None: the whole set)."
    )
    metric: SelectionMetric = Field(
        "val_loss",
        description="Metric for early stopping and for picking the best checkpoint. suite_* metrics need eval.suite_file.",
    )
    patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without improvement; null disables."
    )
    min_delta: float = Field(
        0.0, ge=0, description="Smallest change in the metric that counts as an improvement."
    )
    suite_file: Path | None = Field(
        None,
        description="Eval suite JSONL (prompts with reference/rubric/meta). Set: suite_* metrics at every evaluation, "
        "and the default suite of `chattune eval`.",
    )
    suite_max_items: int | None = Field(
        50, ge=1, description="Suite items answered at each evaluation during training (null: all)."
    )
    suite_max_new_tokens: int = Field(
        128, ge=1, description="Most new tokens per suite answer (training and `chattune eval`)."
    )
    general_check: bool = Field(
        True,
        description="`chattune eval` also asks both models 115 general-knowledge questions (no system prompt) "
        "and reports the share of the base's right answers the fine-tune kept.",
    )

    @property
    def greater_is_better(self) -> bool:
        return greater_is_better(self.metric)

    @model_validator(mode="after")
    def _suite_metric_needs_a_suite(self) -> EvalConfig:
        if self.metric.startswith("suite_") and self.suite_file is None:
            raise ValueError(f"metric {self.metric} is computed on an eval suite: set eval.suite_file")
        return self


class OutputConfig(Section):
    dir: Path = Field(Path("runs"), description="Parent directory of run directories.")
    name: str | None = Field(None, description="Run directory name; defaults to the config file's stem.")
    save_every: int | None = Field(
        None, ge=1, description="Checkpoint every N optimizer steps (and at every evaluation)."
    )
    keep_last: int = Field(2, ge=1, description="Checkpoints to keep besides the best one.")
    report_to: list[Literal["tensorboard", "mlflow"]] = Field(
        ["tensorboard"],
        description="Where metrics go besides metrics.jsonl: tensorboard (<run>/tensorboard) and/or mlflow "
        "(parameters, metrics per step, the final model and reports as artifacts; needs chattune[mlflow]).",
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        description="MLflow store: default MLFLOW_TRACKING_URI if set, else a local SQLite file "
        "<output.dir>/mlflow.db with artifacts in <output.dir>/mlartifacts.",
    )
    mlflow_experiment: str = Field("chattune", description="MLflow experiment the run is filed under.")
    merge_lora: bool = Field(
        True, description="LoRA: also write the merged full model to final/ next to the adapter."
    )
    final_weights: Literal["auto", "best", "last"] = Field(
        "auto",
        description="What final/ holds: best, the checkpoint with the best eval.metric (when validation ran); "
        "last, the last one; auto, the best where early stopping is on (eval.patience) or eval.metric is set, "
        "else the last.",
    )
    overwrite: bool = Field(
        False, description="Replace an existing run of the same name instead of refusing to start."
    )

    @model_validator(mode="before")
    @classmethod
    def _tensorboard_flag(cls, data: object) -> object:
        """`output.tensorboard: false` (the key before report_to existed) still turns TensorBoard off."""
        if isinstance(data, dict) and "tensorboard" in data:
            data = dict(data)
            on = data.pop("tensorboard")
            if isinstance(on, str):
                on = on.strip().lower() in ("1", "true", "yes", "on")
            targets = [t for t in data.get("report_to", ["tensorboard"]) if t != "tensorboard"]
            data["report_to"] = (["tensorboard"] if on else []) + targets
        return data


# The keys train.recipe=auto may choose, per section (chattune/train/recipe.py); a key the user sets wins.
RECIPE_KEYS: dict[str, tuple[str, ...]] = {
    "train": (
        "epochs",
        "learning_rate",
        "batch_size",
        "grad_accum",
        "warmup_ratio",
        "rehearsal",
        "scope_pairs",
        "clarify_pairs",
        "freeze_embeddings",
    ),
    "data": ("max_length", "max_copies"),
}


class RunConfig(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    augment: AugmentConfig | None = Field(
        None, description="Varied copies of the user turns of data.train_file (`chattune augment`)."
    )
    sweep: SweepConfig | None = Field(
        None,
        description="Hyperparameter search over this config (`chattune sweep`); ignored by `chattune train`.",
    )
    openai: OpenAIConfig = Field(
        default_factory=OpenAIConfig, description="Endpoint and job settings when train.backend is openai."
    )

    # Dotted keys that train.recipe=auto filled in (not the user's): left out of saved configs.
    _auto_keys: set[str] = PrivateAttr(default_factory=set)

    @model_validator(mode="after")
    def _openai_trains_replies_only(self) -> RunConfig:
        if self.train.backend == "openai" and self.data.train_on_roles != ["assistant"]:
            raise ValueError(
                "data.train_on_roles: OpenAI's fine-tuning trains the assistant's replies only; leave it at [assistant]"
            )
        return self

    @property
    def run_dir(self) -> Path:
        return self.output.dir / (self.output.name or "run")

    @property
    def auto_keys(self) -> set[str]:
        return self._auto_keys

    def to_yaml(self) -> str:
        """The config as YAML. Nulls are kept: an explicit `max_grad_norm: null` must not come back as the
        default. Under train.recipe=auto, the keys the recipe chooses are written only when the user set
        them: a saved config loaded again (a resumed run, a sweep trial, best.yaml) must let auto choose
        again rather than freeze its last choice, or the defaults, as if the user had set them."""
        data = self.model_dump(mode="json")
        if self.train.recipe == "auto":
            for section, keys in RECIPE_KEYS.items():
                for key in keys:
                    if not self.user_set(section, key):
                        data[section].pop(key, None)
        return yaml.safe_dump(data, sort_keys=False)

    def user_set(self, section: str, key: str) -> bool:
        """Did the user set this key (in the file or on the command line), not a default nor the recipe?"""
        return key in getattr(self, section).model_fields_set and f"{section}.{key}" not in self._auto_keys


# ----------------------------------------------------------------------------------------------------
# Loading


_Model = TypeVar("_Model", bound=BaseModel)


@overload
def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig: ...


@overload
def load_config(
    path: str | Path | None, overrides: list[str] | None = None, *, model: type[_Model]
) -> _Model: ...


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, *, model: type[BaseModel] = RunConfig
) -> BaseModel:
    """Read YAML (or start empty), apply dotted `key=value` overrides, validate, report every error at once."""
    source = str(path) if path else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(source, ["file not found"])
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(source, [f"not valid YAML: {e}".replace("\n", " ")]) from None
        if not isinstance(raw, dict):
            raise ConfigError(
                source, ["the top level must be a mapping of sections (model:, data:, train:, ...)"]
            )
    problems = [problem for item in overrides or [] if (problem := apply_override(raw, item))]
    if model is RunConfig and path is not None:
        raw.setdefault("output", {})
        if isinstance(raw["output"], dict):
            raw["output"].setdefault("name", Path(path).stem)
    try:
        cfg = model.model_validate(raw)
    except ValidationError as e:
        problems += [describe_error(err, model) for err in e.errors()]
    if problems:
        raise ConfigError(source, problems)
    return cfg


def apply_override(raw: dict[str, Any], item: str) -> str | None:
    """Set `a.b.c=value` in a nested dict (value parsed as YAML). Returns a problem, or None."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        return f"override {item!r} is not of the form section.key=value"
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return f"override {key}: {part} is not a section"
    node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    return None


def describe_error(err: Any, model: type[BaseModel]) -> str:
    path = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        valid = _field_names(model, err["loc"][:-1])
        close = difflib.get_close_matches(str(err["loc"][-1]), valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{'.'.join([*map(str, err['loc'][:-1]), close[0]])}'?" if close else ""
        return f"{path}: unknown key{hint} (valid: {', '.join(valid)})"
    return f"{path}: {err['msg']}"


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the config section found by walking `loc` down from `model`."""
    cls: Any = model
    for part in loc:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = _section_class(field.annotation)
    return list(getattr(cls, "model_fields", {}))


def _section_class(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):  # Optional[Section] and friends
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
