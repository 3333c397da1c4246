"""The shipped general-knowledge check: its questions and how "kept" is counted."""

from __future__ import annotations

import re

from chattune.evaluate.general import GeneralQuestion, general_kept, general_questions
from chattune.train.rehearsal import general_prompts


def test_shipped_questions_are_many_distinct_and_never_rehearsed() -> None:
    questions = general_questions()
    asked = [q.question.strip().lower() for q in questions]
    assert len(asked) >= 100 and len(set(asked)) == len(asked)
    for q in questions:
        re.compile(q.pattern)
    # rehearsal trains on the base model's answers to its own prompts: none of them may be a question
    # this check asks, or the check would measure what rehearsal taught
    assert not set(asked) & {p.strip().lower() for p in general_prompts()}


def test_patterns_tell_right_from_wrong_answers() -> None:
    by_question = {q.question: q for q in general_questions()}
    right_and_wrong = {
        "What is the capital of France?": ("The capital of France is Paris.", "It is Lyon."),
        "How many legs does a dog have?": ("A dog has four legs.", "A dog has 8 legs."),
        "What is 6 times 7?": ("To find 6 times 7, we add 6 seven times: 42.", "6 times 7 is 21."),
        "What is the plural of child?": ("The plural of child is children.", "The plural is childs."),
    }
    for question, (right, wrong) in right_and_wrong.items():
        q = by_question[question]
        assert q.is_right(right) and not q.is_right(wrong), question


def test_kept_counts_the_base_right_answers_the_fine_tune_still_gets() -> None:
    questions = [GeneralQuestion(f"q{i}", "yes") for i in range(5)]
    base = ["yes", "yes", "yes", "no", "no"]
    tuned = ["yes", "YES indeed", "no", "yes", "no"]
    out = general_kept(questions, base, tuned)
    assert out["questions"] == 5 and out["base_right"] == 3 and out["finetuned_right"] == 3
    assert out["kept"] == 2 / 3 and out["gained"] == 1
    assert out["lost"] == [{"question": "q2", "base": "yes", "finetuned": "no"}]


def test_kept_is_none_without_a_base_or_when_the_base_got_none_right() -> None:
    questions = [GeneralQuestion("q", "yes")]
    alone = general_kept(questions, None, ["yes"])
    assert alone["finetuned_right"] == 1 and alone["base_right"] is None and alone["kept"] is None
    none_right = general_kept(questions, ["no"], ["yes"])
    assert none_right["base_right"] == 0 and none_right["kept"] is None and none_right["gained"] == 1
