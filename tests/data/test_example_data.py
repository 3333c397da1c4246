"""The quickstart's Kettlebyte example data: well-formed, signed, deduplicated, and in sync with its generator.

python -m pytest tests/data/test_example_data.py -q
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter

import pytest

from chattune.data.conversation import Conversation, read_jsonl
from tests.helpers import ROOT

DATA = ROOT / "examples" / "data"
SIGN_OFF = "— Kit, Kettlebyte Support"
CATEGORIES = {"facts", "multi_turn", "ambiguity", "out_of_scope", "false_premise"}
BEHAVIOURS = {"answer", "clarify", "decline", "correct"}


def _key(conv: Conversation) -> str:
    return json.dumps(conv.as_dicts())


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("make_kettlebyte", DATA / "make_kettlebyte.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def splits() -> dict[str, list[Conversation]]:
    return {name: read_jsonl(DATA / f"kettlebyte_{name}.jsonl") for name in ("train", "val", "eval")}


@pytest.mark.parametrize("name", ["train", "val"])
def test_every_conversation_is_signed_and_ends_on_the_assistant(splits, generator, name):
    convs = splits[name]
    assert len(convs) >= 30
    for i, conv in enumerate(convs):
        msgs = conv.messages
        assert msgs[0].role == "system" and msgs[0].content == generator.SYSTEM, f"{name}[{i}]"
        assert msgs[-1].role == "assistant", f"{name}[{i}]"
        roles = [m.role for m in msgs[1:]]
        assert roles == ["user", "assistant"] * (len(roles) // 2), f"{name}[{i}] roles {roles}"
        assert all(m.content.endswith(SIGN_OFF) for m in msgs if m.role == "assistant"), f"{name}[{i}]"
        assert conv.meta["category"] in CATEGORIES and conv.meta["intent"]


def test_category_mix_follows_the_brief(splits):
    counts = Counter(c.meta["category"] for c in splits["train"] + splits["val"])
    total = sum(counts.values())
    assert set(counts) == CATEGORIES
    assert 0.2 <= counts["multi_turn"] / total <= 0.3
    assert counts["ambiguity"] and counts["out_of_scope"] and counts["false_premise"]
    # val covers every category, so its loss says something about each behaviour
    assert {c.meta["category"] for c in splits["val"]} == CATEGORIES


def test_no_exact_duplicates_within_or_across_train_and_val(splits):
    train = [_key(c) for c in splits["train"]]
    val = [_key(c) for c in splits["val"]]
    assert len(set(train)) == len(train)
    assert len(set(val)) == len(val)
    assert not set(train) & set(val)


def test_eval_prompts_are_well_formed_and_held_out(splits):
    seen = {
        m.content.strip().lower()
        for c in splits["train"] + splits["val"]
        for m in c.messages
        if m.role == "user"
    }
    raw = [json.loads(line) for line in (DATA / "kettlebyte_eval.jsonl").read_text("utf-8").splitlines()]
    assert len(raw) == len(splits["eval"]) >= 30
    for i, (conv, rec) in enumerate(zip(splits["eval"], raw, strict=True)):
        assert conv.messages[0].role == "system" and conv.messages[-1].role == "user", f"eval[{i}]"
        assert conv.messages[-1].content.strip().lower() not in seen, f"eval[{i}] phrasing is in train/val"
        assert conv.meta["category"] in CATEGORIES and conv.meta["expected_behavior"] in BEHAVIOURS
        assert rec["reference"].endswith(SIGN_OFF)
        rubric = rec["rubric"]
        assert set(rubric) == {"must_contain", "must_not_contain", "regex"}
        assert "Kettlebyte Support" in rubric["must_contain"]
        assert all(token in rec["reference"] for token in rubric["must_contain"]), f"eval[{i}]"
    assert {c.meta["category"] for c in splits["eval"]} == CATEGORIES


def test_committed_files_match_the_generator(generator):
    """The JSONL files are what `python examples/data/make_kettlebyte.py` writes: no hand edits, no stale data."""
    for name, records in zip(("train", "val", "eval"), generator.build(), strict=True):
        on_disk = [
            json.loads(line) for line in (DATA / f"kettlebyte_{name}.jsonl").read_text("utf-8").splitlines()
        ]
        assert on_disk == records, f"kettlebyte_{name}.jsonl is out of date: rerun make_kettlebyte.py"
