"""firm_probe's questions are new to the model's training and to bench_learn's general questions."""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from firm_probe import PROBE  # noqa: E402
from learnset import GENERAL  # noqa: E402

from chattune.train.rehearsal import general_prompts


def test_probe_questions_are_distinct_and_neither_general_nor_rehearsed():
    asked = [q.strip().lower() for q, _ in PROBE]
    assert len(asked) >= 150 and len(set(asked)) == len(asked)
    assert not set(asked) & {q.strip().lower() for q, _ in GENERAL}
    assert not set(asked) & {p.strip().lower() for p in general_prompts()}


def test_no_pattern_is_satisfied_by_echoing_its_question():
    # "What is the capital of Singapore?" -> "singapore" would score any answer that repeats the question
    for question, pattern in PROBE:
        assert not re.search(pattern, question, re.I), question
