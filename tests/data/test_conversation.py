"""The one validator, `check_record`: lenient for data prepare (repairs what it can, counts it) and
strict for the readers of training and evaluation files (`parse_openai_record`)."""

from __future__ import annotations

import pytest

from chattune.data.conversation import check_record, parse_openai_record
from chattune.errors import DataError


def test_the_lenient_path_repairs_and_counts_what_the_strict_path_refuses():
    record = {
        "id": 7,
        "messages": [
            {
                "role": "Human",
                "content": [{"type": "text", "text": "How do I"}, {"type": "text", "text": "pair it?"}],
            },
            {"role": "bot", "content": "Hold the button.", "name": "x"},
            {"role": "user", "content": "thanks"},
        ],
    }
    checked = check_record(record)
    assert checked.reason is None and checked.conversation is not None
    assert [m.role for m in checked.conversation.messages] == ["user", "assistant"]
    assert checked.conversation.messages[0].content == "How do I\npair it?"
    assert checked.conversation.meta == {"id": 7}
    assert set(checked.fixes) == {"role_alias", "stripped_keys", "trimmed_trailing_user"}
    with pytest.raises(DataError, match=r"unknown role 'Human'.*field messages\[0\]\.role"):
        parse_openai_record(record, file="t.jsonl", line=3)


def test_the_strict_path_leaves_the_order_of_roles_to_prepare():
    record = {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}
    assert check_record(record).reason == "consecutive_same_role"
    assert [m.content for m in parse_openai_record(record).messages] == ["a", "b"]


@pytest.mark.parametrize(
    ("record", "category", "field"),
    [
        ([1], "not_an_object", None),
        ({"messages": []}, "missing_messages", "messages"),
        ({"messages": ["hi"]}, "message_not_object", "messages[0]"),
        ({"messages": [{"content": "a"}]}, "missing_role", "messages[0].role"),
        ({"messages": [{"role": "user", "content": 3}]}, "missing_content", "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": "a", "weight": 2}]},
            "invalid_weight",
            "messages[0].weight",
        ),
        ({"messages": [{"role": "user", "content": "a"}], "meta": [1]}, "invalid_meta", "meta"),
    ],
)
def test_each_shape_error_names_its_field_on_both_paths(record, category, field):
    with pytest.raises(DataError) as strict:
        parse_openai_record(record, file="t.jsonl", line=1)
    assert str(strict.value).startswith("t.jsonl:1: ")
    if field:
        assert f"field {field}" in str(strict.value)
    lenient = check_record(record)
    if category == "invalid_meta":  # mendable: the meta is dropped and the fix recorded
        assert lenient.reason == "no_assistant" and "dropped_meta" in lenient.fixes
    else:
        assert lenient.reason == category and lenient.field == field
