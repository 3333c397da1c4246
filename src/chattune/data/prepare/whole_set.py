"""The verdicts that only the whole set can give: the scope threshold calibrated on the data's own
scores, the length-outlier limit from its distribution, and the seeded split."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import numpy as np

from chattune.config.prepare import PrepareConfig
from chattune.data import clean
from chattune.data.prepare.records import Record
from chattune.data.prepare.stages import Stages, truncate
from chattune.data.results import Stats


def scope_scores(scope: clean.ScopeIndex, keys: Any, cfg: PrepareConfig, stats: Stats) -> clean.ScopeScores:
    """Scores of the records alive after the first pass (in order) and the threshold set on them; fills
    what the report shows: the histogram and the records nearest the threshold on both sides."""
    sc = scope.scores()
    order = np.argsort(sc.scores, kind="stable")
    cut = int(np.count_nonzero(sc.scores < sc.threshold))
    n = cfg.scope.borderline
    stats.scope = {
        "threshold": round(sc.threshold, 4),
        "calibrated": sc.calibrated,
        "how": sc.how,
        "median": round(sc.median, 4),
        "sigma": round(sc.sigma, 4),
        "action": cfg.scope.action,
        "below": cut,
        "scored": len(sc.scores),
    }
    stats.scope_scores = sc.scores
    # record key -> score of those nearest the threshold; their previews are added in the second pass
    stats.scope_borderline_keys = {
        int(keys[i]): float(sc.scores[i]) for i in order[max(0, cut - n) : cut + n]
    }
    return sc


def judge_scope(row: Record, score: float, sc: clean.ScopeScores, cfg: PrepareConfig) -> None:
    """Below the threshold and naming none of scope.keywords: dropped, or flagged for review."""
    if score >= sc.threshold or row.on_keywords:
        return
    detail = f"scope score {score:.3f} below the threshold {sc.threshold:.3f} ({sc.how})"
    if cfg.scope.action == "drop":
        row.drop("off_scope", detail)
    else:
        row.flags.append(f"off_scope: {detail}")


def outlier_limit(lengths: Any, cfg: PrepareConfig) -> float | None:
    """The token count above which a conversation is a length outlier (IQR or z-score), if any."""
    if cfg.outliers.method == "none" or len(lengths) < 4:
        return None
    a = np.asarray(lengths, dtype=np.float64)
    if cfg.outliers.method == "iqr":
        q1, q3 = np.percentile(a, [25, 75])
        return float(q3 + cfg.outliers.k * (q3 - q1))
    return float(a.mean() + cfg.outliers.z * a.std())


def judge_length(row: Record, limit: float, stages: Stages, stats: Stats) -> None:
    """Over the limit: dropped, or whole turns cut from its front (outliers.action)."""
    if row.tokens <= limit:
        return
    if stages.cfg.outliers.action == "drop":
        row.drop(
            "length_outlier",
            f"{row.tokens} tokens, above the {stages.cfg.outliers.method} limit of {limit:.0f}",
        )
        return
    before = preview(row.messages)
    if (failed := truncate(row, stages, limit)) is not None:
        row.drop(*failed)
    else:
        stats.example("truncated", before, preview(row.messages))


def split_plan(cfg: PrepareConfig, alive_per_source: Counter[int]) -> dict[int, set[int]]:
    """Per source, the positions (among its kept records, in order) that go to validation: a seeded
    sample of val_fraction, so every source is represented in validation."""
    plan = {}
    for s, n in alive_per_source.items():
        rng = random.Random(f"{cfg.split.seed}/{cfg.sources[s].name}")
        n_val = int(n * cfg.split.val_fraction + 0.5)  # half up: a 2-record source at 0.25 gives 1
        plan[s] = set(rng.sample(range(n), n_val))
    return plan


def preview(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m['role']}: {m['content'][:80]}" for m in messages)
