"""The learnability benchmark's data (bench/learnset.py) is a fair test: deterministic from its seed, no
held-out question seen in training, and no general question among the prompts chattune rehearses."""

import sys
from pathlib import Path

import pytest

from chattune.train.rehearsal import general_prompts

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from learnset import make_learnset  # noqa: E402

KINDS = ["fact", "multi_turn", "clarify", "out_of_scope", "impossible", "small_talk"]


def user_turns(conversation: dict) -> set[str]:
    return {m["content"].strip().lower() for m in conversation["messages"] if m["role"] == "user"}


@pytest.mark.parametrize(
    ("seed", "n_train", "mix"),
    [(0, 100, "even"), (1, 400, "even"), (2, 2000, "even"), (3, 400, "fact-heavy")],
)
def test_no_held_out_question_occurs_in_training(seed, n_train, mix):
    ls = make_learnset(seed, n_train, mix)
    asked_in_training = set().union(*(user_turns(c) for c in ls.train))
    held_out = {it["messages"][-1]["content"].strip().lower() for it in ls.test}
    general = {g["question"].strip().lower() for g in ls.general}
    assert len(ls.train) == n_train
    assert held_out and not held_out & asked_in_training
    assert not general & asked_in_training


def test_general_questions_are_not_rehearsed():
    rehearsed = {p.strip().lower() for p in general_prompts()}
    general = {g["question"].strip().lower() for g in make_learnset(0, 100).general}
    assert len(general) >= 100
    assert not general & rehearsed


def test_the_same_seed_invents_the_same_product():
    a, b, c = make_learnset(3, 200), make_learnset(3, 200), make_learnset(4, 200)
    assert a.train == b.train and a.test == b.test
    assert a.brand != c.brand or a.train != c.train


def test_every_size_keeps_every_kind_in_its_share():
    full, small, large = make_learnset(0, 400), make_learnset(0, 100), make_learnset(0, 2000)
    share = {k: sum(c["meta"]["kind"] == k for c in full.train) / 400 for k in KINDS}
    for kind in KINDS:
        assert abs(sum(c["meta"]["kind"] == kind for c in small.train) - 100 * share[kind]) < 1
        assert abs(sum(c["meta"]["kind"] == kind for c in large.train) - 2000 * share[kind]) < 2000 * 0.02
    assert all(c in full.train for c in small.train)
    assert full.test == small.test  # a sample of the 400 is tested on the same held-out items


def test_the_fact_heavy_mix_makes_behaviours_rare():
    even, heavy = make_learnset(0, 400), make_learnset(0, 400, "fact-heavy")
    for kind in ["clarify", "out_of_scope", "impossible", "small_talk"]:
        assert sum(c["meta"]["kind"] == kind for c in even.train) == 64
        assert sum(c["meta"]["kind"] == kind for c in heavy.train) == 28
    assert sum(c["meta"]["kind"] == "fact" for c in heavy.train) == 2 * sum(
        c["meta"]["kind"] == "fact" for c in even.train
    )
    with pytest.raises(ValueError, match="mix='skewed'"):
        make_learnset(0, 400, "skewed")


def test_a_size_beyond_the_generator_is_refused():
    with pytest.raises(ValueError, match="n_train=20000"):
        make_learnset(0, 20_000)
