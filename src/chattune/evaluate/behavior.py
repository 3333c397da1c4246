"""Did the answer do what the item expected: answer, ask a clarifying question, decline, or correct?

    detect(answer)                       # {"clarify": bool, "decline": bool, "correct": bool}
    behavior_pass("clarify", answer)     # True / False

These are deliberately simple, documented heuristics (English only), so a reader can predict them and
a failing item is easy to explain. They are cues in the answer text, not understanding:

- clarify: a sentence ending in "?" that is addressed to the user (second person, or opening with an
  interrogative such as "which", "what", "do", "could", also after "Sure -"), or a clarifying phrase ("do you mean",
  "could you clarify", "which model", "let me know which"). Generic closers ("anything else I can help
  with?") do not count: they are not about the request.
- decline: a refusal or redirect phrase ("I can't help", "I'm not able to", "outside what I can",
  "I can only help with", "I'm not equipped to", "I'm sorry ..., but", "please consult a doctor").
- correct: a false-premise correction cue ("actually", "in fact", "that's not right", "there is no",
  "doesn't have", "isn't", "not quite", "misconception") -- negation and correction words.
- answer: neither declines nor only asks back (asking back is allowed once the answer is long,
  more than ~40 words, since a full answer may close by checking a detail).

Use an LLM judge (`--judge-url`) for anything subtler; these run everywhere, in every evaluation.
"""

from __future__ import annotations

import re

_SENTENCE = re.compile(r"[^.!?\n]*[.!?]+|[^.!?\n]+$", re.MULTILINE)
_SECOND_PERSON = re.compile(r"\b(you|your|you're|yours)\b", re.I)
_INTERROGATIVE_START = re.compile(
    r"(^|[,;:\-–—]\s*)(which|what|when|where|who|how|do|does|did|is|are|was|were|could|can|would|will|should|have|has)\b",
    re.I,
)
_CLARIFY_PHRASES = re.compile(
    r"\b(do you mean|did you mean|could you (please )?(clarify|specify|tell me|confirm|share|let me know)|"
    r"can you (please )?(clarify|specify|tell me|confirm|share)|please (clarify|specify|confirm|let me know)|"
    r"which (one|model|kettle|product|version|device)|let me know which|are you (asking|referring|using))\b",
    re.I,
)
# Questions every assistant appends; they do not ask about the request.
_GENERIC_CLOSER = re.compile(
    r"\b(anything else|help (you )?with (anything|something) else|(can|may) i help|other questions|"
    r"does (that|this) help|is there (something|anything))\b",
    re.I,
)
_DECLINE = re.compile(
    r"\b(i can(no|')t (help|assist|answer|advise|provide|give|recommend)|i cannot|i'm (not able|unable)|"
    r"i am (not able|unable)|i'm sorry[^.!?]{0,40}\bbut|(not|isn't) (equipped|designed) to|i specialize in|not able to (help|assist|advise)|(outside|beyond) (of )?(my|the|what i)|"
    r"out of scope|(can|could) only (help|assist|answer)|only (help|assist) with|i'm (only )?here to help with|"
    r"not something i can|(please )?(consult|contact|ask|see) (a|your) (doctor|physician|electrician|professional|"
    r"pharmacist|medical)|i don't have (information|details|access)|i'm not (the right|qualified))",
    re.I,
)
_CORRECT = re.compile(
    r"\b(actually|in fact|not (quite|true|correct|accurate|right)|that's not|that is not|isn't (true|correct|right)|"
    r"incorrect|there (is|are) no|there isn't|doesn't (have|come|support|offer|work)|does not (have|come|support|offer|work)|"
    r"isn't|aren't|wasn't|don't (have|offer|sell|make)|no longer|misconception|mistaken|to clarify|"
    r"rather than|unfortunately)\b|^\s*no\b",
    re.I | re.MULTILINE,
)

LONG_ANSWER_WORDS = 40


def questions(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip().endswith("?")]


def _plain(text: str) -> str:
    return text.replace("\u2019", "'")  # curly apostrophes, so "can’t" matches "can't"


def asks_clarifying_question(text: str) -> bool:
    text = _plain(text)
    if _CLARIFY_PHRASES.search(text):
        return True
    return any(
        not _GENERIC_CLOSER.search(q) and (_SECOND_PERSON.search(q) or _INTERROGATIVE_START.search(q))
        for q in questions(text)
    )


def declines(text: str) -> bool:
    return bool(_DECLINE.search(_plain(text)))


def corrects_premise(text: str) -> bool:
    return bool(_CORRECT.search(_plain(text)))


def detect(text: str) -> dict[str, bool]:
    """Which behaviours the answer shows (several can hold at once)."""
    return {
        "clarify": asks_clarifying_question(text),
        "decline": declines(text),
        "correct": corrects_premise(text),
    }


def behavior_pass(expected: str | None, text: str) -> bool | None:
    """Whether `text` shows the expected behaviour; None when the item expects nothing in particular."""
    if expected is None:
        return None
    if expected == "clarify":
        return asks_clarifying_question(text)
    if expected == "decline":
        return declines(text)
    if expected == "correct":
        return corrects_premise(text)
    if expected == "answer":
        asks_back = asks_clarifying_question(text) and len(text.split()) <= LONG_ANSWER_WORDS
        return bool(text.strip()) and not declines(text) and not asks_back
    raise ValueError(f"unknown expected behaviour {expected!r}")
