"""Per-answer scores, aggregation per category, percentiles and deltas."""

from __future__ import annotations

import math

import pytest

from chattune.evaluate.metrics import aggregate, by_category, delta, normalize, percentile, score_answer
from chattune.evaluate.suite import Rubric, SuiteItem


def item(**kw: object) -> SuiteItem:
    return SuiteItem(id="t:1", messages=[{"role": "user", "content": "How do I reset it?"}], **kw)  # type: ignore[arg-type]


def test_normalize_ignores_case_punctuation_articles_and_spacing() -> None:
    assert normalize("  The Dial, held for 8 seconds!") == normalize("dial held for 8 SECONDS")


def test_reference_metrics() -> None:
    it = item(reference="Hold the dial for 8 seconds.")
    same = score_answer(it, "hold the dial for 8 seconds")
    assert same["exact_match"] == 1.0 and same["rouge_l"] == pytest.approx(1.0)
    identical = score_answer(it, "Hold the dial for 8 seconds.")
    assert identical["chrf"] == pytest.approx(100) and identical["bleu"] == pytest.approx(100)
    assert same["chrf"] > 80  # sacrebleu's defaults: case and punctuation count for chrF and BLEU
    other = score_answer(it, "Please contact support about your warranty.")
    assert (
        other["exact_match"] == 0.0
        and other["rouge_l"] < 0.3
        and other["chrf"] < same["chrf"]
        and other["bleu"] < 10
    )
    assert other["rubric_pass"] is None and other["behavior_pass"] is None
    assert same["score"] == pytest.approx((same["rouge_l"] + same["chrf"] / 100) / 2)


def test_rubric_is_case_insensitive_and_all_or_nothing() -> None:
    it = item(rubric=Rubric(must_contain=["DIAL"], must_not_contain=["warranty"], regex=[r"\b8 seconds\b"]))
    good = score_answer(it, "Hold the dial for 8 seconds.")
    assert good["rubric_pass"] == 1.0 and good["rubric_checks"] == 1.0
    half = score_answer(it, "Hold the dial. Warranty is 3 years.")
    assert half["rubric_pass"] == 0.0 and half["rubric_checks"] == pytest.approx(1 / 3)
    assert half["rouge_l"] is None and half["answer_words"] == 7.0


def test_score_includes_behaviour_and_judge() -> None:
    it = item(expected_behavior="clarify")
    row = score_answer(it, "Which model do you have?", judge_score=0.5)
    assert row["behavior_pass"] == 1.0 and row["score"] == pytest.approx(0.75)


def test_percentile_matches_numpy_linear() -> None:
    values = [0.3, 0.1, 0.2, 0.9, 0.5]
    assert percentile(values, 50) == pytest.approx(0.3)
    assert percentile(values, 95) == pytest.approx(0.82)  # numpy.percentile(values, 95)
    assert percentile([], 50) is None


def test_aggregate_per_category_and_delta() -> None:
    rows = [
        {"score": 1.0, "rouge_l": 0.5, "latency": 1.0, "ttft": 0.1, "tokens_per_s": 10.0, "truncated": 0.0},
        {"score": 0.0, "rouge_l": None, "latency": 3.0, "ttft": 0.3, "tokens_per_s": 20.0, "truncated": 1.0},
        {"score": 0.5, "rouge_l": 0.1, "latency": 2.0, "ttft": 0.2, "tokens_per_s": 30.0, "truncated": 0.0},
    ]
    overall = aggregate(rows)
    assert overall["n_items"] == 3 and overall["score"] == pytest.approx(0.5)
    assert overall["rouge_l"] == pytest.approx(0.3)  # over the items that define it
    assert overall["latency_p50"] == pytest.approx(2.0) and overall["latency_p95"] == pytest.approx(2.9)
    assert overall["truncated_rate"] == pytest.approx(1 / 3) and overall["bleu"] is None
    cats = by_category(rows, ["b", "a", "b"])
    assert (
        list(cats) == ["a", "b"]
        and cats["b"]["score"] == pytest.approx(0.75)
        and cats["a"]["rouge_l"] is None
    )
    d = delta(cats["b"], cats["a"])
    assert d["score"] == pytest.approx(0.75) and d["rouge_l"] is None and "n_items" not in d
    assert all(v is None or math.isfinite(v) for v in d.values())
