"""Every metric chattune reports: its name, what it means, and which way is better.

One table, read by the eval config (which metric may pick the best checkpoint), the sweep config (which
direction to optimise), the eval report (arrows and labels), the dashboard and the model card. A
validation metric is `val_*`; an eval-suite aggregate measured during training is `suite_<aggregate>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    higher_is_better: bool | None  # None: descriptive, neither direction is better


_TABLE = [
    Metric("score", "score (mean of applicable checks)", True),
    Metric("exact_match", "exact match", True),
    Metric("rubric_pass", "rubric: all checks pass", True),
    Metric("rubric_checks", "rubric: checks passed", True),
    Metric("behavior_pass", "expected behaviour", True),
    Metric("rouge_l", "ROUGE-L F1", True),
    Metric("chrf", "chrF", True),
    Metric("bleu", "BLEU", True),
    Metric("judge_score", "LLM judge", True),
    Metric("answer_words", "answer words (mean)", None),
    Metric("answer_tokens", "answer tokens (mean)", None),
    Metric("truncated_rate", "cut at max_new_tokens", False),
    Metric("ttft_p50", "time to first token p50 (s)", False),
    Metric("ttft_p95", "time to first token p95 (s)", False),
    Metric("latency_p50", "latency p50 (s)", False),
    Metric("latency_p95", "latency p95 (s)", False),
    Metric("tokens_per_s_p50", "tokens/s p50", True),
    Metric("tokens_per_s_p95", "tokens/s p95", True),
    Metric("val_loss", "validation loss", False),
    Metric("val_perplexity", "validation perplexity", False),
    Metric("val_token_accuracy", "validation token accuracy", True),
    Metric("val_tokens", "validation tokens", None),
    Metric("n_items", "items", None),
]
METRICS: dict[str, Metric] = {m.name: m for m in _TABLE}

# The metrics that can pick the best checkpoint, stop early or be optimised by a sweep: validation
# metrics, and suite aggregates measured during training (they need eval.suite_file).
SelectionMetric = Literal[
    "val_loss",
    "val_perplexity",
    "val_token_accuracy",
    "suite_score",
    "suite_rubric_pass",
    "suite_behavior_pass",
    "suite_rouge_l",
    "suite_chrf",
    "suite_exact_match",
]
SELECTION_METRICS: tuple[str, ...] = get_args(SelectionMetric)


def greater_is_better(name: str) -> bool:
    """Direction of a metric that can pick a checkpoint or be optimised; a suite_X metric follows X."""
    metric = METRICS.get(name.removeprefix("suite_"))
    if metric is None or metric.higher_is_better is None:
        raise ValueError(f"{name!r} is not a metric with a direction; known: {', '.join(SELECTION_METRICS)}")
    return metric.higher_is_better
