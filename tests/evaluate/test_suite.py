"""Eval suite loading: valid items parse; every bad line is a one-line DataError naming file, line, field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chattune.errors import DataError
from chattune.evaluate.suite import NO_CATEGORY, load_suite, load_suites

GOOD = [
    {
        "messages": [{"role": "system", "content": "you are kit"}, {"role": "user", "content": "reset?"}],
        "reference": "Hold the dial for 8 seconds.",
        "rubric": {"must_contain": ["dial"], "regex": ["\\b8\\b"]},
        "meta": {"category": "howto", "expected_behavior": "answer", "intent": "reset"},
    },
    {"messages": [{"role": "user", "content": "is it broken?"}], "meta": {"expected_behavior": "clarify"}},
]


def write(path: Path, lines: list[object]) -> Path:
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8"
    )
    return path


def test_load_valid_suite(tmp_path: Path) -> None:
    items = load_suite(write(tmp_path / "s.jsonl", [GOOD[0], "", GOOD[1]]))
    assert [i.id for i in items] == ["s:1", "s:3"]
    first, second = items
    assert first.category == "howto" and first.expected_behavior == "answer" and first.prompt == "reset?"
    assert first.rubric is not None and first.rubric.n_checks == 2
    assert second.category == NO_CATEGORY and second.reference is None and second.rubric is None
    # The run's system prompt is added only where the item has none.
    assert first.with_system("other") == first.messages
    assert second.with_system("you are kit")[0] == {"role": "system", "content": "you are kit"}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("{not json", "s.jsonl:2: invalid JSON"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
            "(field messages[1].role)",
        ),
        (
            {"messages": [{"role": "user", "content": "hi"}], "rubric": {"regex": ["("]}},
            "(field rubric.regex[0])",
        ),
        ({"messages": [{"role": "user", "content": "hi"}], "rubric": {"must": ["x"]}}, "(field rubric.must)"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "rubric": {"must_contain": "x"}},
            "(field rubric.must_contain)",
        ),
        ({"messages": [{"role": "user", "content": "hi"}], "reference": 3}, "(field reference)"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "meta": {"expected_behavior": "dance"}},
            "(field meta.expected_behavior)",
        ),
        ({"messages": [{"role": "user", "content": "hi"}], "answer": "x"}, "unknown key(s) answer"),
        ({"messages": []}, "(field messages)"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path: Path, record: object, expected: str) -> None:
    path = write(tmp_path / "s.jsonl", [GOOD[1], record])
    with pytest.raises(DataError) as err:
        load_suite(path)
    assert expected in str(err.value)
    assert err.value.line == 2


def test_empty_missing_and_duplicate_suites(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no items"):
        load_suite(write(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(DataError, match="no such eval suite"):
        load_suite(tmp_path / "missing.jsonl")
    a = write(tmp_path / "a.jsonl", [{**GOOD[1], "meta": {"id": "x"}}])
    with pytest.raises(DataError, match="duplicate item id"):
        load_suites([a, a])
    b = write(tmp_path / "b.jsonl", GOOD)
    assert [i.id for i in load_suites([a, b], max_items=2)] == ["x", "b:1"]
