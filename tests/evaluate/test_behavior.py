"""The behaviour heuristics: what counts as asking back, declining, correcting and answering."""

from __future__ import annotations

import pytest

from chattune.evaluate.behavior import (
    asks_clarifying_question,
    behavior_pass,
    corrects_premise,
    declines,
    detect,
)


@pytest.mark.parametrize(
    "text",
    [
        "Which model do you have, the K2 or the Mini?",
        "Could you tell me which error code the kettle shows?",
        "Do you mean the app or the kettle itself?",
        "Happy to help. What does the display show?",
        "Sure - is the ring blinking blue or orange?",
    ],
)
def test_clarifying_questions_are_detected(text: str) -> None:
    assert asks_clarifying_question(text)


@pytest.mark.parametrize(
    "text",
    [
        "Hold the dial for 8 seconds until the ring flashes orange.",
        "Hold the dial for 8 seconds. Is there anything else I can help with?",
        "Descale every 4 weeks. Does that help?",
        "",
    ],
)
def test_statements_and_generic_closers_are_not_clarifying(text: str) -> None:
    assert not asks_clarifying_question(text)


def test_declines() -> None:
    assert declines("I'm sorry, but I can only help with Kettlebyte products.")
    assert declines("That is outside what I can help with; please consult a doctor.")
    assert declines("I can't advise on home wiring. Please contact an electrician.") or declines(
        "I cannot advise on home wiring."
    )
    assert declines(
        "I’m sorry for any confusion, but as a support assistant I'm not equipped to provide recipes."
    )
    assert declines("I can’t help with other brands.")  # curly apostrophe
    assert not declines("Hold the dial for 8 seconds to reset the kettle.")


def test_corrects_false_premise() -> None:
    assert corrects_premise("Actually, the K2 holds 1.7 litres, not 2.")
    assert corrects_premise("No, the Mini doesn't have an app.")
    assert corrects_premise("There is no 5 GHz support; the kettle uses 2.4 GHz only.")
    assert not corrects_premise("The K2 holds 1.7 litres.")


def test_behavior_pass_per_expected_behavior() -> None:
    question = "Which model do you have?"
    answer = "Hold the dial for 8 seconds until the ring flashes orange three times."
    refusal = "I'm sorry, but I can only help with Kettlebyte kettles."
    assert behavior_pass(None, answer) is None
    assert behavior_pass("clarify", question) and not behavior_pass("clarify", answer)
    assert behavior_pass("decline", refusal) and not behavior_pass("decline", answer)
    assert behavior_pass("answer", answer)
    assert not behavior_pass("answer", refusal)  # over-refusal fails an answerable item
    assert not behavior_pass("answer", question)  # only asking back is not an answer
    assert not behavior_pass("answer", "")
    long_answer_with_check = (
        " ".join(["Hold the dial for eight seconds until it flashes."] * 6) + " Which model is it?"
    )
    assert behavior_pass("answer", long_answer_with_check)
    assert detect(refusal) == {"clarify": False, "decline": True, "correct": False}
    with pytest.raises(ValueError):
        behavior_pass("dance", answer)
