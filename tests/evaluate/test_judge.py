"""LLM-as-judge against a canned OpenAI-compatible server on 127.0.0.1: prompt, parsing, caching."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chattune.config import TeacherConfig
from chattune.evaluate.judge import Judge, judge_messages, parse_verdict
from chattune.evaluate.suite import Rubric, SuiteItem
from tests.helpers import serve_in_thread

ITEM = SuiteItem(
    id="t:1",
    messages=[{"role": "user", "content": "How do I reset the K2?"}],
    reference="Hold the dial for 8 seconds.",
    rubric=Rubric(must_contain=["dial"]),
    expected_behavior="answer",
)


@pytest.fixture(scope="module")
def judge_server() -> Iterator[dict]:
    """A FastAPI app serving /v1/chat/completions with a canned grade; counts the requests it gets."""
    from fastapi import FastAPI

    state: dict = {"requests": [], "url": ""}
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def completions(body: dict) -> dict:
        state["requests"].append(body)
        return {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "Correct and brief.\nSCORE: 4"},
                }
            ],
        }

    with serve_in_thread(app) as url:
        state["url"] = url
        yield state


def test_parse_verdict() -> None:
    assert parse_verdict("Good.\nSCORE: 5").score == 1.0
    assert parse_verdict("Wrong facts. Score - 1").score == 0.0
    v = parse_verdict("Partly right, I'd give it 3")
    assert v.score == 0.5 and v.reason.startswith("Partly")
    assert parse_verdict("no idea").score is None


def test_judge_prompt_holds_reference_rubric_and_behaviour() -> None:
    msgs = judge_messages(ITEM, "Hold the dial.")
    text = msgs[-1]["content"]
    assert msgs[0]["role"] == "system" and "SCORE" in msgs[0]["content"]
    assert (
        "Hold the dial for 8 seconds." in text and '"dial"' in text and "answer the question directly" in text
    )
    assert text.rstrip().endswith("Hold the dial.")


def test_judge_grades_and_caches(judge_server: dict, tmp_path: Path) -> None:
    cfg = TeacherConfig(kind="openai", base_url=judge_server["url"], model="grader", cache_dir=tmp_path)
    before = len(judge_server["requests"])
    verdict = Judge(cfg).grade(ITEM, "Hold the dial for 8 seconds.")
    assert verdict.score == 0.75 and verdict.reason == "Correct and brief."
    again = Judge(cfg).grade(
        ITEM, "Hold the dial for 8 seconds."
    )  # a fresh Judge: served from the disk cache
    assert again.score == 0.75
    assert len(judge_server["requests"]) == before + 1
    request = judge_server["requests"][-1]
    assert request["model"] == "grader" and request["temperature"] == 0.0


def test_evaluate_with_judge(judge_server: dict, tiny_model_dir: Path, tmp_path: Path) -> None:
    from chattune.evaluate.run import evaluate
    from tests.helpers import write_jsonl

    suite = write_jsonl(tmp_path / "s.jsonl", [{"messages": ITEM.messages, "reference": ITEM.reference}] * 1)
    cfg = TeacherConfig(
        kind="openai", base_url=judge_server["url"], model="grader", cache_dir=tmp_path / "cache"
    )
    result = evaluate(
        str(tiny_model_dir),
        compare_base=False,
        suites=[suite],
        out_dir=tmp_path / "out",
        max_new_tokens=4,
        judge=cfg,
    )
    overall = result.metrics["finetuned"]["overall"]
    assert result.metrics["judge"] == "grader" and overall["judge_score"] == 0.75
    assert "judge: Correct and brief." in result.report_file.read_text()
