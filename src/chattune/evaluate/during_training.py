"""Suite metrics at every evaluation during training, for curves and early stopping.

    metrics.update(suite_metrics(model, tokenizer, cfg.eval, system=data.system_prompt))  # eval.suite_file set

Answers the first `eval.suite_max_items` suite prompts greedily with at most `eval.suite_max_new_tokens`
new tokens (no base model, no judge, no timings) and returns flat keys, all greater-is-better, 0..1:

    suite_score           mean of each item's applicable rubric / behaviour / ROUGE-L / chrF checks
    suite_rubric_pass     share of items whose every rubric check passes
    suite_behavior_pass   share of items showing their meta.expected_behavior
    suite_rouge_l         mean ROUGE-L F1 against the references
    suite_chrf            mean chrF / 100 against the references
    suite_exact_match     share of normalised exact matches

A key no sampled item defines (no references -> no ROUGE) is NaN; naming such a key in `eval.metric`
is an error, raised at the first evaluation rather than silently never improving.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING

from chattune.config import EvalConfig
from chattune.errors import ChattuneError
from chattune.evaluate.metrics import aggregate
from chattune.evaluate.suite import SuiteItem, load_suites

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SUITE_KEYS = {
    "suite_score": "score",
    "suite_rubric_pass": "rubric_pass",
    "suite_behavior_pass": "behavior_pass",
    "suite_rouge_l": "rouge_l",
    "suite_chrf": "chrf",
    "suite_exact_match": "exact_match",
}


@functools.lru_cache(maxsize=4)
def _items(path: str, mtime_ns: int, max_items: int | None) -> tuple[SuiteItem, ...]:
    return tuple(load_suites([Path(path)], max_items=max_items))


def suite_metrics(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    eval_cfg: EvalConfig,
    system: str | None = None,
) -> dict[str, float]:
    """Greedy answers to the suite, scored; the model is left in the train/eval mode it came in.
    `system` is prepended to items without a system turn (pass the prompt the run trains with)."""
    from chattune.evaluate.run import answer_items
    from chattune.generate import GenerationSettings

    if eval_cfg.suite_file is None:
        return {}
    path = Path(eval_cfg.suite_file)
    mtime = path.stat().st_mtime_ns if path.is_file() else 0
    items = list(_items(str(path), mtime, eval_cfg.suite_max_items))
    settings = GenerationSettings(temperature=0.0, max_new_tokens=eval_cfg.suite_max_new_tokens)
    rows = answer_items(model, tokenizer, items, settings, system=system, warmup=False)  # no timings here
    summary = aggregate(rows)
    out = {}
    for key, src in SUITE_KEYS.items():
        value = summary[src]
        out[key] = math.nan if value is None else value / 100 if src == "chrf" else value
    if eval_cfg.metric in out and math.isnan(out[eval_cfg.metric]):
        raise ChattuneError(
            f"eval.metric={eval_cfg.metric}, but no item of {path} (first {len(items)}) defines it "
            "(references give rouge_l/chrf/exact_match, rubrics give rubric_pass, meta.expected_behavior gives behavior_pass)"
        )
    return out
