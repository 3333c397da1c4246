"""`chattune eval` on the real embedded model (SmolLM2-135M-Instruct) against itself. Marked slow."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chattune.cli import app
from tests.helpers import write_jsonl

pytestmark = pytest.mark.slow


def test_eval_embedded_against_itself(tmp_path: Path) -> None:
    """The real model on 3 items: same model, same greedy settings -> identical answers, zero quality delta."""
    records = [
        {
            "messages": [{"role": "user", "content": "How do I reset my Kettlebyte K2?"}],
            "reference": "Hold the dial for 8 seconds until the ring flashes orange three times.",
            "rubric": {"must_contain": ["8 seconds"]},
            "meta": {"category": "facts", "expected_behavior": "answer"},
        },
        {
            "messages": [{"role": "user", "content": "My kettle shows an error code."}],
            "meta": {"category": "ambiguity", "expected_behavior": "clarify"},
        },
        {
            "messages": [{"role": "user", "content": "What's a good lasagne recipe?"}],
            "meta": {"category": "out_of_scope", "expected_behavior": "decline"},
        },
    ]
    suite = write_jsonl(tmp_path / "suite.jsonl", records)
    out = tmp_path / "out"
    args = [
        "eval",
        "embedded",
        "--base",
        "embedded",
        "--suite",
        str(suite),
        "--out",
        str(out),
        "--max-new-tokens",
        "16",
        "--no-general",  # ~2 minutes on the real model; the general check is tested on tiny models
    ]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert all(r["finetuned"]["answer"] == r["base"]["answer"] != "" for r in items)
    assert m["general"] is None
    assert m["delta"]["overall"]["score"] == 0.0 and m["delta"]["overall"]["rouge_l"] == 0.0
    assert set(m["finetuned"]["per_category"]) == {"facts", "ambiguity", "out_of_scope"}
    for model in ("finetuned", "base"):
        overall = m[model]["overall"]
        assert 0 < overall["ttft_p50"] <= overall["latency_p50"] and overall["tokens_per_s_p50"] > 0
