"""Is general ability kept? The fine-tune and its base answer the same general-knowledge questions, and the
share of the base's right answers that the fine-tune still gets right is reported with what it lost.

    questions = general_questions()                  # 115 shipped questions, each with a regex for right
    kept = general_kept(questions, base_answers, tuned_answers)
    kept["kept"], kept["lost"]                       # 0.76, [{"question", "base", "finetuned"}, ...]

Fine-tuning on a narrow domain overwrites some of what a small model knew ("A dog has 8 legs" after a
support set; see the README's recipe section), and a suite of domain prompts cannot show it. The
questions are asked with no system prompt, as a user of the base model asks them: the domain's trained
system prompt is where its behaviour (redirecting off-topic requests included) belongs. They are disjoint
from the prompts self-rehearsal trains on (train/rehearsal_prompts.txt; a test holds it), so rehearsal
cannot teach them. The learnability benchmark (bench/bench_learn.py) reports the same figure on the same
questions.

Many of a small model's right answers are near coin-flips (SmolLM2-135M: 57 of its 71), which any change
to the weights may tip either way, so "gained" is reported beside "lost".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

QUESTIONS_FILE = Path(__file__).with_name("general_questions.json")
# Long enough for a small model's roundabout right answers ("To find 6 times 7, we can use ... 42").
MAX_NEW_TOKENS = 80


@dataclass(frozen=True)
class GeneralQuestion:
    question: str
    pattern: str  # a regex that a right answer contains (case-insensitive)

    def is_right(self, answer: str) -> bool:
        return re.search(self.pattern, answer, re.IGNORECASE | re.DOTALL) is not None

    @property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.question}]


@cache
def general_questions() -> tuple[GeneralQuestion, ...]:
    rows = json.loads(QUESTIONS_FILE.read_text(encoding="utf-8"))
    return tuple(GeneralQuestion(r["question"], r["pattern"]) for r in rows)


def general_kept(
    questions: tuple[GeneralQuestion, ...] | list[GeneralQuestion],
    base_answers: list[str] | None,
    tuned_answers: list[str],
) -> dict[str, Any]:
    """The metrics.json section: how many the fine-tune answers right and, against the base, the share of
    the base's right answers it kept (None when there is no base or the base got none right)."""
    tuned_right = [q.is_right(a) for q, a in zip(questions, tuned_answers, strict=True)]
    out: dict[str, Any] = {
        "questions": len(questions),
        "finetuned_right": sum(tuned_right),
        "base_right": None,
        "kept": None,
        "lost": [],
        "gained": 0,
    }
    if base_answers is None:
        return out
    base_right = [q.is_right(a) for q, a in zip(questions, base_answers, strict=True)]
    kept_count = sum(was and now for was, now in zip(base_right, tuned_right, strict=True))
    out.update(
        base_right=sum(base_right),
        kept=kept_count / sum(base_right) if any(base_right) else None,
        lost=[
            {"question": q.question, "base": b, "finetuned": t}
            for q, b, t, was, now in zip(
                questions, base_answers, tuned_answers, base_right, tuned_right, strict=True
            )
            if was and not now
        ],
        gained=sum(now and not was for was, now in zip(base_right, tuned_right, strict=True)),
    )
    return out
