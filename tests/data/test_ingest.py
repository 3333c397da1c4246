"""Ingest: every supported format to OpenAI-shaped records, bad records located, bad files one-line errors."""

from __future__ import annotations

import json

import pytest

from chattune.config.prepare import SourceConfig
from chattune.data.ingest import iter_source
from chattune.errors import DataError

PAIR = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def records(path, **kw):
    return list(iter_source(SourceConfig(path=path, **kw)))


def test_sharegpt_jsonl_with_aliases(tmp_path):
    p = tmp_path / "s.jsonl"
    rows = [
        {
            "system": "be brief",
            "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}],
        },
        {
            "conversations": [
                {"from": "user", "value": "x"},
                {"from": "bot", "value": "y"},
                {"from": "function", "value": "{}"},
            ]
        },
    ]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    a, b = records(p)
    assert a.obj == {"messages": [{"role": "system", "content": "be brief"}, *PAIR]}
    assert [m["role"] for m in b.obj["messages"]] == ["user", "assistant", "tool"]
    assert (a.loc, a.loc_kind) == (1, "line")


def test_alpaca_and_bad_lines_do_not_fail_the_file(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(
        b'{"instruction": "Sum", "input": "2+2", "output": "4"}\n{not json\n\n"\xff\xfe"\n'
        + json.dumps({"messages": PAIR}).encode()
        + b"\n"
    )
    recs = records(p)
    assert [r.loc for r in recs] == [1, 2, 4, 5]
    assert recs[0].obj["messages"][0] == {"role": "user", "content": "Sum\n\n2+2"}
    assert [r.error for r in recs] == [None, "invalid_json", "invalid_utf8", None]
    assert "\\xff" in recs[2].raw  # the quarantine keeps the bytes visible


def test_csv_bom_quoted_newlines_and_missing_column(tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text('\ufeffq\ta\n"multi\nline"\tanswer\nq2\ta2\n', encoding="utf-8")
    recs = records(p, columns={"prompt": "q", "response": "a"})
    assert [r.loc for r in recs] == [2, 4]
    assert recs[0].obj["messages"][0]["content"] == "multi\nline"
    with pytest.raises(
        DataError, match=r"t.tsv:1: column 'question' not in the header \(q, a\).*field question"
    ):
        records(p, columns={"prompt": "question", "response": "a"})


def test_parquet_and_datasets_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict

    rows = [
        {"messages": PAIR, "prompt": None, "response": None},
        {"messages": None, "prompt": "p", "response": "r"},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    recs = records(tmp_path / "d.parquet")
    assert recs[0].obj["messages"] == PAIR and recs[1].obj["messages"][1]["content"] == "r"
    assert (recs[1].loc, recs[1].loc_kind) == (1, "index")

    DatasetDict({"train": Dataset.from_list([{"question": "q", "answer": "a"}])}).save_to_disk(
        tmp_path / "hf"
    )
    recs = records(tmp_path / "hf", columns={"prompt": "question", "response": "answer"})
    assert recs[0].obj["messages"][1] == {"role": "assistant", "content": "a"}
    with pytest.raises(DataError, match="no split 'test'"):
        records(tmp_path / "hf", hf_split="test")


def test_unknown_format_names_the_expected_ones(tmp_path):
    (tmp_path / "x.xml").write_text("<x/>")
    with pytest.raises(DataError, match="x.xml: unknown file type '.xml'; expected OpenAI messages"):
        records(tmp_path / "x.xml")
    with pytest.raises(DataError, match="no such file"):
        records(tmp_path / "missing.jsonl")
