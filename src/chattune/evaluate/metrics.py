"""Scores for one answer, and their aggregation overall and per category.

    row = score_answer(item, "Hold the dial for 8 seconds ...")   # {"rubric_pass": 1.0, "rouge_l": 0.41, ...}
    summary = aggregate(rows)                                       # means, p50/p95 latencies

A metric that does not apply to an item (ROUGE without a reference, rubric without a rubric) is None for
that item and left out of its mean, so a category's number is over the items that define it.
Scales: exact_match, rubric_*, behavior_pass, rouge_l, judge_score and score are 0..1; chrF and BLEU
are sacrebleu's 0..100 (sentence-level, averaged over items).
"""

from __future__ import annotations

import functools
import math
import re
import string
import unicodedata
from collections.abc import Iterable
from typing import Any

from chattune.config import METRICS
from chattune.evaluate.behavior import behavior_pass
from chattune.evaluate.suite import SuiteItem

# Direction of every aggregate key: True = greater is better, False = smaller is better, None = neither.
HIGHER_IS_BETTER: dict[str, bool | None] = {name: m.higher_is_better for name, m in METRICS.items()}
QUALITY_KEYS = [
    "score",
    "exact_match",
    "rubric_pass",
    "rubric_checks",
    "behavior_pass",
    "rouge_l",
    "chrf",
    "bleu",
    "judge_score",
]
MEAN_KEYS = [*QUALITY_KEYS, "answer_words", "answer_tokens"]
PERCENTILE_KEYS = ("ttft", "latency", "tokens_per_s")

_PUNCT = str.maketrans("", "", string.punctuation + "–—“”‘’…")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    """SQuAD-style normalisation for exact match: case, punctuation, articles and spacing ignored."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def rubric_results(rubric: Any, answer: str) -> list[bool]:
    """One bool per rubric check, case-insensitive: substrings for must_(not_)contain, re.search for regex."""
    low = answer.lower()
    return (
        [s.lower() in low for s in rubric.must_contain]
        + [s.lower() not in low for s in rubric.must_not_contain]
        + [re.search(p, answer, re.IGNORECASE) is not None for p in rubric.regex]
    )


@functools.cache
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def score_answer(item: SuiteItem, answer: str, judge_score: float | None = None) -> dict[str, float | None]:
    """Quality metrics of one answer (no timings). `score` is the mean of the item's applicable
    rubric_pass, behavior_pass, rouge_l, chrF/100 and judge_score: one number to rank items by."""
    import sacrebleu

    row: dict[str, float | None] = dict.fromkeys(QUALITY_KEYS)
    if item.reference is not None:
        row["exact_match"] = float(normalize(answer) == normalize(item.reference))
        row["rouge_l"] = float(_rouge().score(item.reference, answer)["rougeL"].fmeasure)
        row["chrf"] = sacrebleu.sentence_chrf(answer, [item.reference]).score
        row["bleu"] = sacrebleu.sentence_bleu(answer, [item.reference]).score
    if item.rubric is not None:
        checks = rubric_results(item.rubric, answer)
        row["rubric_pass"] = float(all(checks))
        row["rubric_checks"] = sum(checks) / len(checks)
    passed = behavior_pass(item.expected_behavior, answer)
    row["behavior_pass"] = None if passed is None else float(passed)
    row["judge_score"] = judge_score
    parts = [row["rubric_pass"], row["behavior_pass"], row["rouge_l"], row["judge_score"]]
    parts.append(None if row["chrf"] is None else row["chrf"] / 100)
    present = [p for p in parts if p is not None]
    row["score"] = sum(present) / len(present) if present else None
    row["answer_words"] = float(len(answer.split()))
    return row


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), None for no values."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def aggregate(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Means of the per-item metrics and p50/p95 of the timings over `rows`."""
    out: dict[str, float | None] = {"n_items": float(len(rows))}
    for key in MEAN_KEYS:
        out[key] = _mean(r.get(key) for r in rows)
    out["truncated_rate"] = _mean(r.get("truncated") for r in rows)  # stopped by max_new_tokens
    for key in PERCENTILE_KEYS:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[f"{key}_p50"] = percentile(values, 50)
        out[f"{key}_p95"] = percentile(values, 95)
    return out


def by_category(rows: list[dict[str, Any]], categories: list[str]) -> dict[str, dict[str, float | None]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row, cat in zip(rows, categories, strict=True):
        groups.setdefault(cat, []).append(row)
    return {cat: aggregate(groups[cat]) for cat in sorted(groups)}


def delta(finetuned: dict[str, float | None], base: dict[str, float | None]) -> dict[str, float | None]:
    """finetuned - base for every key both define (n_items excluded)."""
    out: dict[str, float | None] = {}
    for k in finetuned:
        if k == "n_items" or k not in base:
            continue
        after, before = finetuned[k], base[k]
        out[k] = after - before if after is not None and before is not None else None
    return out
