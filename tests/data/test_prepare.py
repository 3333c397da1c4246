"""End to end: `data prepare` on the messy multi-format set in tests/data/prepare (see build_messy.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from chattune.cli import app
from chattune.config import DataConfig, load_config
from chattune.config.prepare import PrepareConfig
from chattune.data.conversation import read_jsonl
from chattune.data.prepare import run
from chattune.data.training_files import resolve_training_files

_spec = importlib.util.spec_from_file_location(
    "build_messy", Path(__file__).parent / "prepare/build_messy.py"
)
assert _spec and _spec.loader
build_messy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_messy)

GLOSSARY = {"error": ["bug", "defect", "glitch"], "sign in": ["log in", "log-in", "signin"]}
DESCRIPTION = (
    "Customer support for Brewly smart kettles: setup, cleaning and settings. "
    "Accounts, passwords and sign in to the Brewly app. Orders, returns and subscriptions."
)
KEYWORDS = ["kettle", "app", "account", "password", "order", "subscription"]


def prepare_section(root: Path, out: Path, **changes) -> dict:
    section = {
        "sources": [
            {"path": str(root / "chat.jsonl")},
            {"path": str(root / "sharegpt.json")},
            {
                "path": str(root / "faq.csv"),
                "columns": {"prompt": "question", "response": "answer", "system": "sys"},
            },
            {"path": str(root / "alpaca.jsonl")},
        ],
        "output_dir": str(out),
        "glossary": {"terms": GLOSSARY},
        "language": {"keep": ["en"]},
        "scope": {"keywords": KEYWORDS},
        "outliers": {"method": "iqr", "k": 3.0},
        "split": {"val_fraction": 0.1},
    }
    section.update(changes)
    return section


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("messy")
    build_messy.build(root)
    out = root / "out"
    cfg = PrepareConfig.model_validate(prepare_section(root, out))
    result = run(cfg, tiny_tokenizer, max_length=512, epochs=1.0, n_params=1_000_000)
    ledger = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
    return result, ledger, out


def _key(entry: dict) -> tuple[str, int]:
    return Path(entry["file"]).name, entry.get("line", entry.get("index"))


def test_every_defect_is_handled_as_expected(prepared):
    _, ledger, _ = prepared
    by_key = {_key(e): e for e in ledger}
    assert set(build_messy.EXPECTED) <= set(by_key)
    for key, expected in build_messy.EXPECTED.items():
        e = by_key[key]
        if expected == "kept":
            assert e["status"] == "kept", (key, e)
        elif expected.startswith("fixed:"):
            kinds = {f.split(":")[0] for f in e.get("fixes", [])}
            assert e["status"] == "fixed" and expected[6:] in kinds, (key, e)
        else:
            assert e["status"] == "dropped" and e["reason"] == expected[8:], (key, e)


def test_the_ledger_adds_up(prepared):
    result, ledger, out = prepared
    assert len(ledger) == result.n_input == 49  # blank lines are not records
    assert result.n_input == result.n_kept + result.n_dropped
    assert sum(e["status"] != "dropped" for e in ledger) == result.n_kept
    quarantine = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    assert len(quarantine) == result.n_dropped and all("raw" in q for q in quarantine)
    assert sum(result.drops.values()) == result.n_dropped
    assert result.n_train + result.n_val == result.n_kept  # all weights are 1
    # Each duplicate names the record it duplicates, and that one was kept.
    status = {_key(e): e["status"] for e in ledger}
    dups = [e for e in ledger if e.get("reason", "").endswith("duplicate")]
    assert len(dups) == 3
    for e in dups:
        kept = e["duplicate_of"]
        assert status[(Path(kept["file"]).name, kept.get("line", kept.get("index")))] != "dropped"


def test_output_loads_with_the_strict_reader_and_is_clean(prepared):
    result, ledger, out = prepared
    train, val = read_jsonl(out / "train.jsonl"), read_jsonl(out / "val.jsonl")
    assert len(train) == result.n_train and len(val) == result.n_val > 0
    text = "\n".join(m.content for c in train + val for m in c.messages)
    assert (
        "ann.smith@example.com" not in text
        and "4111 1111 1111 1111" not in text
        and "192.168.0.12" not in text
    )
    assert "[EMAIL]" in text and "[CREDIT_CARD]" in text and "[PHONE]" in text and "[IP]" in text
    assert "1234 5678 9012 3456" in text  # fails the Luhn check: an order number, not a card
    assert "Café preset" in text and "cafÃ©" not in text
    assert "<b>" not in text and "Tap Add device\nHold the kettle button" in text
    assert "\u200b" not in text and "\x07" not in text
    # Glossary: case kept, code spans and URLs untouched.
    assert "I found a Error when I sign in to the app, see https://brewly.example/bug and `bug_id`" in text
    assert "That ERROR is fixed" in text
    # The similar-but-distinct pair both survive.
    assert (
        "How do I reset my password on the website?" in text
        and "How do I reset my password in the mobile app?" in text
    )
    # The truncated conversation keeps its system prompt and final exchange.
    truncated = next(e for e in ledger if "truncated" in e.get("fixes", []))
    conv = (train if truncated["split"] == "train" else val)[truncated["output_line"] - 1]
    assert conv.messages[0].role == "system" and conv.messages[-1].content == "No, rinse the kettle by hand."
    assert len(conv.messages) < 19


def test_counts_and_statistics(prepared):
    result, _, out = prepared
    stats = json.loads((out / "stats.json").read_text())
    assert stats["pii"] == {"email": 1, "phone": 1, "credit_card": 1, "ip": 1}
    assert stats["glossary"] == {"error": 2, "sign in": 2}
    assert stats["validation_categories"]["unknown_role"] == 2
    assert stats["validation_categories"]["ends_on_user"] == 1
    assert stats["languages"]["de"] == 1
    tok = stats["tokens_per_conversation"]
    assert 0 < tok["min"] <= tok["p5"] <= tok["median"] <= tok["p95"] <= tok["max"]
    assert stats["assistant_tokens"]["max"] < tok["max"]
    # 29 training rows * 3 epochs < 100 examples, so OpenAI raises the epochs to 100 // 29.
    assert stats["openai"]["epochs"] == 100 // result.n_train
    estimate = stats["local_training_estimate"]  # from the run's n_params, epochs and training tokens
    assert (estimate["params"], estimate["epochs"]) == (1_000_000, 1.0) and estimate["seconds"] > 0
    assert tok["min"] * result.n_train <= estimate["tokens"] <= tok["max"] * result.n_train
    html = (out / "report.html").read_text()
    assert "Largest duplicate clusters" in html and html.count("data:image/png;base64") >= 5
    assert {p.name for p in (out / "plots").iterdir()} >= {
        "token_lengths.png",
        "drops.png",
        "fixes.png",
        "languages.png",
    }


def test_weights_and_split_are_seeded_and_stratified(tmp_path, tiny_tokenizer):
    root = tmp_path / "messy"
    build_messy.build(root)
    section = prepare_section(root, tmp_path / "a", split={"val_fraction": 0.25, "seed": 7})
    section["sources"][0]["weight"] = 2.0
    a = run(PrepareConfig.model_validate(section), tiny_tokenizer, max_length=512)
    ledger = [json.loads(x) for x in (tmp_path / "a/ledger.jsonl").read_text().splitlines()]
    chat_train = sum(e.get("split") == "train" and e["source"] == "chat" for e in ledger)
    assert a.n_train == sum(e.get("split") == "train" for e in ledger) + chat_train  # chat rows doubled
    assert {e["source"] for e in ledger if e.get("split") == "val"} >= {"chat", "faq"}
    section["output_dir"] = str(tmp_path / "b")
    run(PrepareConfig.model_validate(section), tiny_tokenizer, max_length=512)
    assert (tmp_path / "a/val.jsonl").read_text() == (tmp_path / "b/val.jsonl").read_text()


def test_worker_processes_give_the_same_outputs_as_one_process(tmp_path, tiny_tokenizer, monkeypatch):
    """The messy set is smaller than one chunk; here records stream through forked workers in chunks
    of 3 and every file must be byte-identical to the one-process run."""
    from chattune.data import parallel
    from chattune.data.prepare import pipeline

    root = tmp_path / "messy"
    build_messy.build(root)
    monkeypatch.setattr(parallel, "MAX_WORKERS", 1)
    run(
        PrepareConfig.model_validate(prepare_section(root, tmp_path / "one", report=False)),
        tiny_tokenizer,
        max_length=512,
    )
    monkeypatch.setattr(parallel, "MAX_WORKERS", 8)
    monkeypatch.setattr(pipeline, "CHUNK", 3)
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 2)
    calls = []
    real_pool = parallel.multiprocessing.get_context("fork").Pool
    monkeypatch.setattr(
        parallel.multiprocessing.get_context("fork"),
        "Pool",
        lambda n: calls.append(n) or real_pool(n),
        raising=False,
    )
    run(
        PrepareConfig.model_validate(prepare_section(root, tmp_path / "many", report=False)),
        tiny_tokenizer,
        max_length=512,
    )
    assert calls == [2]  # one pool for the whole run
    for name in ("train.jsonl", "val.jsonl", "ledger.jsonl", "quarantine.jsonl", "stats.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many" / name).read_bytes(), name


def test_parallel_map_keeps_order_and_batches():
    from chattune.data.parallel import parallel_map, parallel_map_batches

    data = list(range(2500))
    assert parallel_map(lambda x: x * x, data, chunk=100) == [x * x for x in data]
    assert (
        parallel_map_batches(lambda xs: [len(xs)] * len(xs), data, chunk=1000) == [1000] * 2000 + [500] * 500
    )
    assert parallel_map(lambda x: x, []) == []


def test_embedding_scope_drops_off_topic(tmp_path, tiny_tokenizer):
    root = tmp_path / "messy"
    build_messy.build(root)
    section = prepare_section(root, tmp_path / "out", scope={"description": DESCRIPTION})
    section["sources"] = section["sources"][:1]
    run(PrepareConfig.model_validate(section), tiny_tokenizer, max_length=512)
    ledger = {_key(e): e for e in map(json.loads, (tmp_path / "out/ledger.jsonl").read_text().splitlines())}
    assert ledger[("chat.jsonl", 25)]["reason"] == "off_scope"
    assert sum(e.get("reason") == "off_scope" for e in ledger.values()) == 1


def test_resolve_training_files(tmp_path):
    out = tmp_path / "prep"
    data = DataConfig.model_validate({"prepare": {"sources": [{"path": "x.jsonl"}], "output_dir": str(out)}})
    out.mkdir()
    (out / "train.jsonl").write_text('{"messages": []}\n')
    (out / "val.jsonl").write_text("")
    assert resolve_training_files(data) == (out / "train.jsonl", None)
    data.train_file = tmp_path / "mine.jsonl"
    assert resolve_training_files(data) == (tmp_path / "mine.jsonl", None)


def test_cli_prepare_and_inspect(tmp_path, tiny_model_dir):
    root = tmp_path / "messy"
    build_messy.build(root)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"name": str(tiny_model_dir)},
                "data": {"prepare": prepare_section(root, tmp_path / "out")},
            }
        )
    )
    result = CliRunner().invoke(app, ["data", "prepare", str(config), "data.prepare.dedupe.near=false"])
    assert result.exit_code == 0, result.output
    assert "49 records in = " in result.output and "dropped" in result.output
    assert len(read_jsonl(tmp_path / "out/train.jsonl")) > 20
    cfg = load_config(config)
    assert resolve_training_files(cfg.data)[0] == tmp_path / "out/train.jsonl"

    result = CliRunner().invoke(app, ["data", "inspect", str(root / "chat.jsonl"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    for category in (
        "invalid_json",
        "utf8_repaired",
        "unknown_role",
        "not_an_object",
        "ends_on_user",
        "system_not_first",
    ):
        assert category in result.output
    assert "line 17" in result.output  # where the first invalid JSON line is


def test_cli_errors_are_one_line(tmp_path, tiny_model_dir):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": str(tiny_model_dir)}}))
    result = CliRunner().invoke(app, ["data", "prepare", str(config)])
    assert result.exit_code == 2 and "data.prepare: missing" in result.output
    config.write_text(yaml.safe_dump({"data": {"prepare": {"sources": [{"path": "x.jsonl", "wieght": 2}]}}}))
    result = CliRunner().invoke(app, ["data", "prepare", str(config)])
    assert result.exit_code == 2 and "wieght" in result.output
    bad = tmp_path / "data.xml"
    bad.write_text("<x/>")
    config.write_text(
        yaml.safe_dump(
            {"model": {"name": str(tiny_model_dir)}, "data": {"prepare": {"sources": [{"path": str(bad)}]}}}
        )
    )
    result = CliRunner().invoke(app, ["data", "prepare", str(config)])
    assert (
        result.exit_code == 2 and "data.xml" in result.output and "expected OpenAI messages" in result.output
    )
