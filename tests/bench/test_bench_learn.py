"""bench_learn: a configuration is judged by its mean over runs, with the range beside it; a base answer's
decision margin is the narrowest greedy choice on the way to its right answer."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_learn import FAMILIES, KINDS, REDIRECTED, summarise, unprompted_off_topic  # noqa: E402


def run(trainer: str, heldout: float, kept: float, seconds: float, firm: float = 0.9) -> dict:
    return {
        "trainer": trainer,
        "heldout": heldout,
        **dict.fromkeys(KINDS, heldout),
        "general_kept": kept,
        "general_kept_firm": firm,
        "train_seconds": seconds,
    }


def test_mean_and_range_per_trainer_over_its_runs():
    rows = [
        run("chattune", 0.89, 0.66, 297, firm=0.93),
        run("chattune", 0.81, 0.76, 303, firm=0.86),
        run("trl", 0.9, 0.3, 960),
    ]
    (line,) = summarise(rows)  # TRL ran once: nothing to average
    assert line.startswith("chattune over 2 runs")
    assert "heldout 85% (81%-89%)" in line
    assert "general_kept 71% (66%-76%)" in line
    assert "general_kept_firm 90% (86%-93%)" in line  # the base's firm answers, beside all of them
    assert "train s 300 (297-303)" in line


def test_a_kind_missing_from_a_run_is_left_out_of_its_mean():
    rows = [run("chattune", 0.8, 0.7, 300), run("chattune", 0.6, 0.7, 300)]
    rows[1]["clarify"] = None  # a learnset with no item of that kind
    (line,) = summarise(rows)
    assert "clarify 80% (80%-80%)" in line
    assert "heldout 70% (60%-80%)" in line
    assert "off_topic_answered" not in line  # a figure these rows did not record


def test_a_decision_margin_is_the_narrowest_greedy_choice_before_the_answer_is_right(tiny_model_dir):
    import torch
    from bench_learn import decision_margins
    from transformers import AutoModelForCausalLM, AutoTokenizer

    never, third_char = r"(?!)", r"[\s\S]{3}"  # no answer matches; a match needs three characters
    margins = decision_margins(str(tiny_model_dir), ["hello there", "hello there"], [never, third_char])
    assert margins[0] is None

    # by hand: greedy steps, each step's gap between the two likeliest tokens, until the pattern matches
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "hello there"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    prompt_len, gaps = ids.shape[1], []
    for _ in range(80):
        with torch.no_grad():
            top = torch.log_softmax(model(ids).logits[0, -1].float(), -1).topk(2)
        gaps.append(float(top.values[0] - top.values[1]))
        ids = torch.cat([ids, top.indices[:1].view(1, 1)], dim=1)
        if re.search(third_char, tok.decode(ids[0, prompt_len:], skip_special_tokens=True), re.S):
            break
    else:
        raise AssertionError("the tiny model never wrote three characters: pick another pattern")
    assert margins[1] == pytest.approx(min(gaps), abs=1e-4)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_unprompted_off_topic_requests_are_the_other_families_and_every_redirect_is_caught(family):
    ls = FAMILIES[family](0, 400)
    trained = {m["content"] for c in ls.train for m in c["messages"] if m["role"] == "user"}
    asked = unprompted_off_topic(family)
    assert len(asked) == 60 and not set(asked) & trained  # never seen in this set's training
    redirects = {c["messages"][-1]["content"] for c in ls.train if c["meta"]["kind"] == "out_of_scope"}
    assert redirects and all(re.search(REDIRECTED, r, re.I) for r in redirects)
    facts = [c["messages"][-1]["content"] for c in ls.train if c["meta"]["kind"] == "fact"]
    assert not any(re.search(REDIRECTED, f, re.I) for f in facts)  # an answer is not taken for one
