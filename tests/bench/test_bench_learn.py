"""bench_learn's summary: a configuration is judged by its mean over runs, with the range beside it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_learn import KINDS, summarise  # noqa: E402


def run(trainer: str, heldout: float, kept: float, seconds: float) -> dict:
    return {
        "trainer": trainer,
        "heldout": heldout,
        **dict.fromkeys(KINDS, heldout),
        "general_kept": kept,
        "train_seconds": seconds,
    }


def test_mean_and_range_per_trainer_over_its_runs():
    rows = [run("chattune", 0.89, 0.66, 297), run("chattune", 0.81, 0.76, 303), run("trl", 0.9, 0.3, 960)]
    (line,) = summarise(rows)  # TRL ran once: nothing to average
    assert line.startswith("chattune over 2 runs")
    assert "heldout 85% (81%-89%)" in line
    assert "general_kept 71% (66%-76%)" in line
    assert "train s 300 (297-303)" in line


def test_a_kind_missing_from_a_run_is_left_out_of_its_mean():
    rows = [run("chattune", 0.8, 0.7, 300), run("chattune", 0.6, 0.7, 300)]
    rows[1]["clarify"] = None  # a learnset with no item of that kind
    (line,) = summarise(rows)
    assert "clarify 80% (80%-80%)" in line
    assert "heldout 70% (60%-80%)" in line
