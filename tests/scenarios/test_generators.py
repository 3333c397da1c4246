"""The model-backed generators: teacher-drafted conversations and grounded document Q&A, against an
OpenAI-compatible stub server started in the test (the embedded model's run is in
tests/integration/test_scenarios.py)."""

from __future__ import annotations

import re
from pathlib import Path

from chattune.config import TeacherConfig
from chattune.data.conversation import read_jsonl
from chattune.scenarios import build, load_spec
from chattune.scenarios.generators import clean_line, grounding, split_passages, teacher_scenes
from chattune.teacher import Teacher
from tests.helpers import ROOT, OpenAIStub

EXAMPLE = ROOT / "examples" / "scenarios.yaml"
PRODUCT = ROOT / "examples" / "product.md"


def kit_stub(messages: list[dict[str, str]]) -> str:
    """Canned teacher: drafts a user turn, restates the facts it is given, or quotes its passage."""
    last = messages[-1]["content"]
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    if "Write one new message" in last:
        want = re.search(r"The customer wants: (.+)", last).group(1).rstrip(".")  # type: ignore[union-attr]
        return f'"Customer: Hi there, {want.lower()}?"\nSecond line the cleaner drops.'
    if "Write one question" in last:
        section = re.search(r"section '([^']*)'", last).group(1)  # type: ignore[union-attr]
        return f"Question: What does the section '{section}' say?"
    if "Facts you may use:" in system:
        return "Here you go. " + " ".join(
            line[2:] for line in system.split("Facts you may use:\n", 1)[1].splitlines()
        )
    if "Answer only from this passage:" in system:
        return system.split("Answer only from this passage:\n", 1)[1].strip()[:300]
    return "ok"


def overrides(stub: OpenAIStub, tmp_path: Path) -> list[str]:
    return [
        "generate.per_category=6",
        "generate.eval_per_category=1",
        "model_generator.enabled=true",
        "model_generator.per_intent=2",
        "teacher.kind=openai",
        "teacher.model=stub-teacher",
        f"teacher.base_url={stub.base_url}",
        f"teacher.cache_dir={tmp_path / 'cache'}",
        f"documents.files=[{PRODUCT}]",
        "documents.max_passages=4",
    ]


def test_teacher_and_documents_against_an_openai_compatible_server(tmp_path):
    spec = load_spec(EXAMPLE)
    with OpenAIStub(kit_stub) as stub:
        result = build(EXAMPLE, tmp_path / "a", overrides=overrides(stub, tmp_path))
        first_requests = len(stub.requests)
        # 18 intents x 2 drafts x (user + reply) + 4 passages x (question + answer)
        assert first_requests == len(spec.intents) * 2 * 2 + 4 * 2
        assert result.rejected == {"teacher": 0, "documents": 0}

        convs = read_jsonl(result.conversations_file)
        drafted = [c for c in convs if c.meta["generator"] == "teacher"]
        assert drafted and {c.meta["category"] for c in drafted} == {"personas", "synonymous"}
        for c in drafted:
            user = c.messages[1].content
            assert user.startswith("Hi there,") and "\n" not in user  # label, quotes, extra lines cleaned off
            assert c.meta["fact_check"] in ("passed", "none")
            assert c.messages[-1].content.endswith("— Kit, Kettlebyte Support")
            for keyword in spec.keywords(spec.intent(c.meta["intent"]).facts):
                assert keyword in c.messages[-1].content
        assert any(c.meta.get("persona") for c in drafted)

        docs = [c for c in convs if c.meta["category"] == "document_qa"]
        text = PRODUCT.read_text(encoding="utf-8")
        assert docs
        for c in docs:
            src = c.meta["source"]
            assert Path(src["file"]) == PRODUCT and src["heading"]
            assert text[src["start"] : src["end"]].strip() == src["text"]  # cites its passage exactly
            assert c.messages[-1].content.startswith(src["text"][:50])
        assert any(r.category == "document_qa" and r.status == "extra" for r in result.coverage.categories)

        # a rerun pays nothing: every request comes from the on-disk cache
        again = build(EXAMPLE, tmp_path / "b", overrides=overrides(stub, tmp_path))
        assert len(stub.requests) == first_requests
        assert again.teacher_requests == 0 and again.teacher_cache_hits == first_requests
        assert again.conversations_file.read_bytes() == result.conversations_file.read_bytes()


def test_replies_failing_the_fact_check_are_replaced_or_dropped(tmp_path):
    def wrong(messages: list[dict[str, str]]) -> str:
        return (
            "Maybe try turning it off and on again."
            if messages[0]["role"] == "system"
            else "How do I use it?"
        )

    spec = load_spec(
        EXAMPLE,
        ["model_generator.enabled=true", "model_generator.per_intent=1", "model_generator.max_attempts=2"],
    )
    with OpenAIStub(wrong) as stub:
        cfg = TeacherConfig(kind="openai", model="m", base_url=stub.base_url, cache_dir=tmp_path)
        scenes, rejected = teacher_scenes(spec, Teacher(cfg))
    checked = [i for i in spec.intents if spec.keywords(i.facts)]
    with_slots = [i for i in checked if "{" in (i.answer or "")]
    assert rejected == len(with_slots)  # no fact-safe reference to fall back on
    replaced = [s for s in scenes if s.meta["fact_check"] == "replaced_by_reference"]
    assert len(replaced) == len(checked) - len(with_slots)
    for s in replaced:
        assert s.turns[0][1] == spec.intent(s.meta["intent"]).answer


def test_passages_and_grounding():
    passages = split_passages(PRODUCT, 400)
    text = PRODUCT.read_text(encoding="utf-8")
    assert len(passages) >= 5 and all(len(p.text) <= 400 or "\n\n" not in p.text for p in passages)
    assert {p.heading for p in passages} >= {"How-to", "Policies"}
    for p in passages:
        assert text[p.start : p.end].strip() == p.text and not p.text.startswith("#")
    share, missing = grounding(
        "Descaling takes 20 minutes with vinegar.", next(p.text for p in passages if "Descal" in p.text)
    )
    assert share >= 0.5 and missing == []
    assert grounding("It takes 45 minutes.", "Descaling takes 20 minutes.")[1] == ["45"]


def test_teacher_drafts_are_cleaned_to_one_message():
    assert (
        clean_line('You could ask: "How long is the warranty?" It is a good question.')
        == "How long is the warranty?"
    )
    assert clean_line('"Customer: Hi there, can I pair it?"\nA second line.') == "Hi there, can I pair it?"
    assert clean_line("\n  \n1. Question: Is it safe?") == "Is it safe?"
    assert clean_line("Quick question: how do I reset it?") == "Quick question: how do I reset it?"
    assert clean_line("   ") == ""
