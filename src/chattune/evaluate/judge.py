"""LLM-as-judge: a stronger model behind any OpenAI-compatible endpoint grades each answer 1-5.

    judge = Judge(TeacherConfig(kind="openai", base_url="http://localhost:8000/v1", model="qwen2.5-7b"))
    verdict = judge.grade(item, answer)      # Verdict(score=0.75, reason="...", raw="...")

The judge sees the conversation, the reference answer and rubric when the item has them, and the
expected behaviour; it replies with a one-sentence reason and `SCORE: n`. The 1..5 grade is mapped to
0..1 so it averages with the other metrics. Requests go through `chattune.teacher.Teacher`, greedy,
so every (judge model, prompt, answer) is asked once and then served from the on-disk cache.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from chattune.config import TeacherConfig
from chattune.evaluate.suite import SuiteItem
from chattune.teacher import Teacher

JUDGE_SYSTEM = (
    "You are a strict, fair grader of a customer-support assistant. Grade the ASSISTANT ANSWER to the last user "
    "message on a 1-5 scale: 5 = correct, complete, appropriately brief and does what the expected behaviour asks; "
    "3 = partly correct or missing something important; 1 = wrong, made up, harmful or off-task. When a reference "
    "answer is given, facts that contradict it are wrong. Reply with one sentence of reasoning, then a final line "
    "exactly of the form `SCORE: <1-5>`."
)
BEHAVIOR_TEXT = {
    "answer": "answer the question directly",
    "clarify": "ask a clarifying question, because the request is ambiguous",
    "decline": "politely decline or redirect, because the request is out of scope",
    "correct": "correct the false premise in the question",
}
_SCORE = re.compile(r"score\W{0,5}([1-5])\b", re.I)
_DIGIT = re.compile(r"\b([1-5])\b")


@dataclass
class Verdict:
    score: float | None  # 0..1, None when the reply held no grade
    reason: str
    raw: str


def judge_messages(item: SuiteItem, answer: str) -> list[dict[str, str]]:
    convo = "\n".join(f"{m['role'].upper()}: {m['content']}" for m in item.messages)
    parts = [f"CONVERSATION:\n{convo}"]
    if item.reference:
        parts.append(f"REFERENCE ANSWER:\n{item.reference}")
    if item.rubric:
        parts.append(f"RUBRIC:\n{json.dumps(item.rubric.model_dump(), ensure_ascii=False)}")
    if item.expected_behavior:
        parts.append(f"EXPECTED BEHAVIOUR: the assistant should {BEHAVIOR_TEXT[item.expected_behavior]}.")
    parts.append(f"ASSISTANT ANSWER:\n{answer}")
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def parse_verdict(text: str) -> Verdict:
    """`SCORE: n` wins; otherwise the last standalone 1-5 digit; otherwise no score."""
    m = _SCORE.search(text)
    digits = _DIGIT.findall(text)
    grade = int(m.group(1)) if m else int(digits[-1]) if digits else None
    reason = _SCORE.sub("", text).strip().splitlines()[0].strip() if text.strip() else ""
    return Verdict(score=None if grade is None else (grade - 1) / 4, reason=reason, raw=text)


class Judge:
    def __init__(self, cfg: TeacherConfig):
        # Greedy and short: a grade must not change between runs, and a sentence plus a score is enough.
        self.teacher = Teacher(
            cfg.model_copy(update={"temperature": 0.0, "max_new_tokens": min(cfg.max_new_tokens, 200)})
        )
        self.model = cfg.model

    def grade(self, item: SuiteItem, answer: str) -> Verdict:
        return parse_verdict(self.teacher.complete(judge_messages(item, answer)))
