"""The `openai:` section of a run config: endpoint, retries, hyperparameters and prices for hosted runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chattune.config.section import Section

# USD per 1M training tokens, from https://openai.com/api/pricing (checked 2025-06). Prices change:
# override or add a model under openai.training_price_per_million.
TRAINING_PRICES = {
    "gpt-4.1-2025-04-14": 25.0,
    "gpt-4.1-mini-2025-04-14": 5.0,
    "gpt-4.1-nano-2025-04-14": 1.5,
    "gpt-4o-2024-08-06": 25.0,
    "gpt-4o-mini-2024-07-18": 3.0,
    "gpt-3.5-turbo-0125": 8.0,
}


class OpenAIConfig(Section):
    base_url: str | None = Field(
        None,
        description="API base URL, e.g. an Azure OpenAI or proxy endpoint; null: https://api.openai.com/v1. "
        "The key is always read from OPENAI_API_KEY.",
    )
    organization: str | None = Field(None, description="OpenAI organization id, when the key has several.")
    project: str | None = Field(None, description="OpenAI project id, when the key has several.")
    max_retries: int = Field(
        5,
        ge=0,
        description="Retries of a request that hit a rate limit (429), a server error (5xx), a timeout or a "
        "dropped connection; the SDK backs off exponentially (0.5 s doubling to 8 s) or as Retry-After says.",
    )
    timeout_seconds: float = Field(
        600.0, gt=0, description="Per-request timeout; uploads of large files need the most."
    )
    poll_seconds: float = Field(
        10.0, gt=0, description="Seconds between looks at a running job's status and events."
    )
    n_epochs: int | Literal["auto"] = Field(
        "auto",
        description="Epochs; auto lets OpenAI choose (3, scaled to the data size). When auto and train.epochs "
        "is set in the config to a whole number, that is used.",
    )
    batch_size: int | Literal["auto"] = Field(
        "auto",
        description="Examples per batch; auto lets OpenAI choose. When auto, an explicit train.batch_size is used.",
    )
    learning_rate_multiplier: float | Literal["auto"] = Field(
        "auto",
        description="Scales OpenAI's own (unpublished) base learning rate; train.learning_rate has no "
        "equivalent and is not sent.",
    )
    beta: float | Literal["auto"] = Field(
        "auto", description="DPO only: how strongly the model is held to the base model's behaviour."
    )
    suffix: str | None = Field(
        None, max_length=64, description="Up to 64 characters added to the fine-tuned model's name."
    )
    method: Literal["auto", "supervised", "dpo"] = Field(
        "auto",
        description="auto: dpo when the training file holds preference pairs (input / preferred_output / "
        "non_preferred_output), else supervised.",
    )
    training_price_per_million: dict[str, float] = Field(
        default_factory=lambda: dict(TRAINING_PRICES),
        description="USD per 1M trained tokens by base model, for the estimate shown before a job starts.",
    )
