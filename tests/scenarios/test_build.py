"""Scenario builds from the example spec: all eight categories, valid conversations, a held-out eval
suite in the evaluation stage's format, a coverage report, reproducibility, and spec errors."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from chattune.cli import app
from chattune.data.conversation import check_record, parse_openai_record, read_jsonl
from chattune.errors import ConfigError
from chattune.evaluate.suite import load_suites
from chattune.scenarios import CATEGORIES, build, load_spec
from chattune.scenarios.build import structure_problems
from chattune.scenarios.engine import TemplateEngine, apply_persona, embed_question
from tests.helpers import ROOT

EXAMPLE = ROOT / "examples" / "scenarios.yaml"
SMALL = ["generate.per_category=12", "generate.eval_per_category=3"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(EXAMPLE, tmp_path_factory.mktemp("scen"), overrides=SMALL)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_example_spec_builds_all_eight_categories(built):
    convs = read_jsonl(built.conversations_file)
    counts = {c: sum(conv.meta["category"] == c for conv in convs) for c in CATEGORIES}
    assert all(n >= 6 for n in counts.values()), counts  # 12 asked for; hold-outs take a few
    assert len(convs) == built.n_conversations == sum(counts.values())


def test_every_conversation_is_valid_training_data(built):
    spec = load_spec(EXAMPLE)
    engine = TemplateEngine(spec)
    for i, raw in enumerate(lines(built.conversations_file), start=1):
        conv = parse_openai_record(raw, file="conversations.jsonl", line=i)
        assert structure_problems(conv) == []
        roles = [m.role for m in conv.messages]
        assert roles[0] == "system" and roles[-1] == "assistant"
        assert roles[1:] == ["user", "assistant"] * (len(roles[1:]) // 2)
        assert all(
            m.content.endswith(spec.assistant.sign_off) for m in conv.messages if m.role == "assistant"
        )
        assert "{" not in json.dumps([m.content for m in conv.messages])  # every slot filled
        meta = conv.meta
        assert meta["generator"] == "template"
        # the seed in the provenance redraws the same conversation
        redrawn = engine.draw(meta["category"], random.Random(meta["seed"]))
        assert [u for u, _ in redrawn.turns] == [m.content for m in conv.messages if m.role == "user"]
        assert meta["expected_behavior"] in ("answer", "clarify", "decline", "correct")
        if meta["category"] in (
            "personas",
            "language_complexity",
            "synonymous",
            "multi_turn",
            "interleaved_intents",
        ):
            assert meta["intent"] in {it.name for it in spec.intents}
        if meta["category"] == "personas":
            assert meta["persona"] in {p.name for p in spec.personas}


def test_conversations_pass_the_data_stage_validator(built):
    for raw in lines(built.conversations_file):
        checked = check_record(raw)
        assert checked.reason is None and checked.categories == [], checked


def test_categories_behave_as_described(built):
    convs = read_jsonl(built.conversations_file)
    by = {c: [x for x in convs if x.meta["category"] == c] for c in CATEGORIES}
    clarifying = [c for c in by["ambiguity"] if c.meta["expected_behavior"] == "clarify"]
    assert clarifying and all("?" in c.messages[2].content for c in clarifying)
    assert all(c.meta["expected_behavior"] == "correct" for c in by["negative"])
    assert all(len(c.messages) >= 5 for c in by["multi_turn"])  # system + at least two exchanges
    # interleaved: switches away and comes back to the first intent
    for c in by["interleaved_intents"]:
        ints = c.meta["intents"]
        assert len(ints) >= 3 and ints[0] == ints[-1] and ints[1] != ints[0]
    assert {c.meta["complexity"] for c in by["language_complexity"]} == {"plain", "nuanced"}
    # a paraphrase set: several different wordings for one intent
    sets: dict[str, set[str]] = {}
    for c in by["synonymous"]:
        sets.setdefault(c.meta["paraphrase_set"], set()).add(c.messages[1].content)
    assert max(len(v) for v in sets.values()) >= 2


def test_eval_suite_is_held_out_and_in_the_evaluation_format(built):
    records = lines(built.eval_file)
    assert len(records) == built.n_eval == 3 * len(CATEGORIES)
    assert {r["meta"]["category"] for r in records} == set(CATEGORIES)
    train_user_turns = {
        m.content.lower()
        for c in read_jsonl(built.conversations_file)
        for m in c.messages
        if m.role == "user"
    }
    for r in records:
        assert set(r) == {"messages", "reference", "rubric", "meta"}
        assert r["messages"][-1]["role"] == "user" and r["messages"][0]["role"] == "system"
        assert set(r["rubric"]) == {"must_contain", "must_not_contain", "regex"}
        assert "— Kit, Kettlebyte Support" in r["rubric"]["must_contain"]
        assert r["reference"].endswith("— Kit, Kettlebyte Support")
        assert r["meta"]["expected_behavior"] in ("answer", "clarify", "decline", "correct")
        assert r["messages"][-1]["content"].lower() not in train_user_turns  # held out
        if r["meta"]["expected_behavior"] == "clarify":
            assert r["rubric"]["regex"] == [r"\?"]
        for pattern in r["rubric"]["regex"]:
            assert re.search(pattern, r["reference"])
        for needle in r["rubric"]["must_contain"]:  # the reference itself passes its rubric
            assert needle.lower() in r["reference"].lower()
    items = load_suites([built.eval_file])
    assert len(items) == len(records)


def test_coverage_report_shows_the_balance(built):
    report = built.coverage
    rows = {r.category: r for r in report.categories}
    assert set(rows) == set(CATEGORIES)
    assert sum(r.share for r in rows.values()) == pytest.approx(1.0)
    assert all(r.distinct_phrasings == r.conversations for r in rows.values())  # exact repeats are dropped
    data = json.loads(built.report_files["json"].read_text())
    assert data["total"] == built.n_conversations
    html = built.report_files["html"].read_text()
    assert "data:image/png;base64," in html and all(c in html for c in CATEGORIES)
    assert built.report_files["png"].read_bytes()[:4] == b"\x89PNG"
    assert report.intents and report.personas
    written = yaml.safe_load((built.out_dir / "spec.yaml").read_text())
    assert written["generate"]["per_category"] == 12


def test_missing_and_thin_categories_are_warned_about(tmp_path):
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["ambiguous"] = []  # nothing to build ambiguity from
    raw["false_premises"] = raw["false_premises"][:1]  # one item, and without personas no variants of it
    raw["personas"] = []
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw, allow_unicode=True))
    result = build(
        spec, tmp_path / "out", overrides=["generate.per_category=30", "generate.eval_per_category=0"]
    )
    status = {r.category: r.status for r in result.coverage.categories}
    assert status["ambiguity"] == status["personas"] == "missing" and status["negative"] == "thin"
    assert any("ambiguity is missing" in w for w in result.coverage.warnings)
    assert any("negative is thin" in w for w in result.coverage.warnings)


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = build(EXAMPLE, tmp_path / "a", overrides=SMALL)
    b = build(EXAMPLE, tmp_path / "b", overrides=SMALL)
    c = build(EXAMPLE, tmp_path / "c", overrides=[*SMALL, "generate.seed=1"])
    assert a.conversations_file.read_bytes() == b.conversations_file.read_bytes()
    assert a.eval_file.read_bytes() == b.eval_file.read_bytes()
    assert a.conversations_file.read_bytes() != c.conversations_file.read_bytes()


def test_spec_errors_are_reported_with_names(tmp_path):
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["generate"]["per_categroy"] = 5
    spec = tmp_path / "typo.yaml"
    spec.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ConfigError, match=r"did you mean 'generate.per_category'"):
        load_spec(spec)
    # cross-references are checked once the fields are valid, every problem in one message
    raw["generate"].pop("per_categroy")
    raw["intents"][0]["facts"] = ["no_such_fact"]
    raw["intents"][1]["examples"] = ["How do I reset my {model}?"]
    raw["ambiguous"][0]["resolutions"][0]["intent"] = "no_such_intent"
    spec.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ConfigError) as e:
        load_spec(spec)
    msg = str(e.value)
    assert "intents[0].facts: unknown fact 'no_such_fact'" in msg
    assert "intents[1]: placeholder {model}" in msg
    assert "unknown intent 'no_such_intent'" in msg


def test_engine_transforms_keep_the_request():
    spec = load_spec(EXAMPLE)
    rng = random.Random(0)
    question = "How do I pair my K2 with the app?"
    for persona in spec.personas:
        out = apply_persona(persona, question, random.Random(1))
        assert "pair" in out and "K2" in out and out != question
    assert embed_question(question) == "how to pair my K2 with the app"
    assert embed_question("Why is it blue?") is None
    engine = TemplateEngine(spec)
    assert engine.synonym_swap("Connect the kettle to Kettlebyte Home", random.Random(3)).endswith(
        ("Kettlebyte Home", "app", "phone app")
    )  # the product name is swapped as a whole, never split
    scene = engine.draw("ambiguity", rng)
    assert scene is not None and scene.meta["expected_behavior"] in ("clarify", "answer")


def test_cli_scenarios_build(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["scenarios", "build", str(EXAMPLE), *SMALL, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (
        "done" in result.output and (out / "conversations.jsonl").is_file() and (out / "eval.jsonl").is_file()
    )
    bad = runner.invoke(
        app, ["scenarios", "build", str(EXAMPLE), "generate.per_category=0", "--out", str(out)]
    )
    assert bad.exit_code == 2
    assert "generate.per_category" in bad.output
