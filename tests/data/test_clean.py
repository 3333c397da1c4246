"""Cleaning building blocks: text repair, PII, glossary, noise, truncation, duplicates, validation."""

from __future__ import annotations

from chattune.config.prepare import DedupeConfig, NoiseConfig, PiiConfig, TextConfig
from chattune.data.clean import drop_empty_turns, fix_text, noise_reason, truncate_front
from chattune.data.conversation import Message, check_record
from chattune.data.dedupe import DuplicateFinder
from chattune.data.glossary import Glossary
from chattune.data.pii import luhn_ok, redact
from chattune.data.validate import openai_estimate, token_stats


def msgs(*pairs):
    return [Message(role=r, content=c) for r, c in pairs]


def test_fix_text_repairs_and_leaves_code_alone():
    text, fixes = fix_text("cafÃ© <b>bold</b>\u200b\n\n\n\n`<div>`", TextConfig())
    assert text == "café bold\n\n`<div>`" and fixes == ["unicode", "html", "whitespace"]
    assert fix_text("x < y and y > z", TextConfig()) == ("x < y and y > z", [])
    assert fix_text("cafÃ©", TextConfig(unicode=False))[1] == []


def test_pii_redaction():
    text, counts = redact(
        "a@b.co, 4111-1111-1111-1111, 4111 1111 1111 1112, 10.0.0.1, ::1 fe80::1:2:3, (555) 123-4567, 2024-01-31, v1.2.3",
        PiiConfig(),
    )
    assert text == "[EMAIL], [CREDIT_CARD], 4111 1111 1111 1112, [IP], [IP] [IP], [PHONE], 2024-01-31, v1.2.3"
    assert counts == {"email": 1, "credit_card": 1, "ip": 3, "phone": 1}
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert redact("see https://x.io/a", PiiConfig(url=True))[0] == "see [URL]"
    assert redact("mail a@b.co", PiiConfig(enabled=False))[0] == "mail a@b.co"


def test_glossary_whole_words_case_and_protected_spans():
    g = Glossary({"error": ["bug", "glitch"], "sign in": ["log in", "signin"]})
    text, counts = g.apply("Bug! a BUG, debug, bugs, `bug` https://x.io/bug log  in Signin")
    assert text == "Error! a ERROR, debug, bugs, `bug` https://x.io/bug sign in Sign in"
    assert counts == {"error": 2, "sign in": 2}


def test_noise_and_empty_turns():
    cfg = NoiseConfig()
    assert noise_reason(msgs(("user", "hi"), ("assistant", "x")), cfg)[0] == "too_short"
    assert noise_reason(msgs(("user", "!!!! ???? ####"), ("assistant", "?? !! ## ..")), cfg)[0] == "junk"
    assert noise_reason(msgs(("user", "q"), ("assistant", "spam " * 40)), cfg)[0] == "repetitive"
    assert (
        noise_reason(
            msgs(("user", "how do I reset it"), ("assistant", "hold the dial for eight seconds")), cfg
        )
        is None
    )
    m = msgs(("system", " "), ("user", ""), ("assistant", "a"), ("user", "q"), ("assistant", "b"))
    assert drop_empty_turns(m) == msgs(("user", "q"), ("assistant", "b"))


def test_truncate_front_keeps_system_and_final_exchange():
    m = msgs(("system", "s"), ("user", "u1"), ("assistant", "a1"), ("user", "u2"), ("assistant", "a2"))
    assert truncate_front(m, [5, 50, 50, 10, 10], overhead=2, limit=40) == [m[0], m[3], m[4]]
    assert truncate_front(m, [5, 50, 50, 10, 500], overhead=2, limit=40) is None


def test_near_duplicates_found_and_distinct_pairs_kept():
    finder = DuplicateFinder(DedupeConfig(threshold=0.7))
    base = (
        "To pair the kettle open the app tap add device and hold the power button until the ring blinks blue"
    )
    assert finder.add(0, msgs(("user", "How do I pair the kettle?"), ("assistant", base))) is None
    assert finder.add(1, msgs(("user", "how do i pair the KETTLE"), ("assistant", base + "!"))) == (
        0,
        "exact_duplicate",
    )
    assert finder.add(
        2, msgs(("user", "How do I pair the kettle please?"), ("assistant", base + " again"))
    ) == (0, "near_duplicate")
    other = "To reset the kettle unplug the base wait ten seconds and hold the power button until the ring turns red"
    assert finder.add(3, msgs(("user", "How do I reset the kettle?"), ("assistant", other))) is None


def test_validation_categories():
    assert check_record([]).reason == "not_an_object"
    assert check_record({"messages": []}).reason == "missing_messages"
    r = check_record(
        {
            "messages": [
                {"role": "user", "content": "q", "name": "x"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "q"},
            ]
        }
    )
    assert r.reason is None and set(r.categories) == {"unrecognised_keys", "empty_content", "ends_on_user"}
    assert r.fixes == ["stripped_keys", "trimmed_trailing_user"] and len(r.messages) == 2
    assert check_record({"messages": [{"role": "user"}, {"content": "a"}]}).categories == [
        "missing_content",
        "missing_role",
    ]
    assert check_record({"messages": [{"role": "user", "content": "q"}]}).reason == "no_assistant"
    assert openai_estimate([10] * 10) == (10, 1000)  # 10 examples: epochs raised to 100 // 10
    assert openai_estimate([20_000] * 20_000) == (1, 20_000 * 16385)
    assert token_stats([1, 2, 3])["median"] == 2


def test_near_duplicate_recall_just_above_threshold():
    """Pairs whose true Jaccard is ~0.86 at threshold 0.8 must be found (datasketch's default LSH band
    weights lose ~18% of them)."""
    import random

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(5000)]
    finder = DuplicateFinder(DedupeConfig(threshold=0.8))
    found = 0
    for k in range(100):
        words = rng.sample(vocab, 80)
        near = list(words)
        near[40:44] = ["x1", "x2", "x3", "x4"]  # 4 of 80 words changed: Jaccard of the 3-grams ~0.86
        assert finder.add(2 * k, msgs(("user", "q"), ("assistant", " ".join(words)))) is None
        found += finder.add(2 * k + 1, msgs(("user", "q"), ("assistant", " ".join(near)))) == (
            2 * k,
            "near_duplicate",
        )
    assert found >= 95
