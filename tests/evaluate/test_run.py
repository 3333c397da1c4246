"""`chattune eval` end to end on tiny Llamas: a run fine-tuned on the suite's answers against its base.

The "fine-tuned" model is the session's tiny random Llama trained for a few hundred milliseconds on the
suite's reference answers, so it must beat its base on the rubric, references and validation loss.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chattune.cli import app
from chattune.config import EvalConfig
from chattune.errors import ChattuneError
from tests.helpers import write_jsonl

QA = [
    (
        "how do I reset it",
        "hold the dial for eight seconds",
        "howto",
        "answer",
        {"must_contain": ["dial"], "regex": ["eight|8"]},
    ),
    ("how often should I descale", "every four weeks", "howto", "answer", {"must_contain": ["four weeks"]}),
    (
        "is it broken",
        "which model do you have? the K2 or the Mini",
        "ambiguous",
        "clarify",
        {"regex": ["\\?"]},
    ),
    ("hello", "hello how can I help you today", "greeting", None, {"must_not_contain": ["descal"]}),
]
SYSTEM = "you are kit"


def suite_records() -> list[dict]:
    return [
        {
            "messages": [{"role": "user", "content": q}],
            "reference": a,
            "rubric": rubric,
            "meta": {"category": cat, **({"expected_behavior": beh} if beh else {})},
        }
        for q, a, cat, beh, rubric in QA
    ]


def conversations() -> list[dict]:
    return [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": q},
                {"role": "assistant", "content": a},
            ]
        }
        for q, a, *_ in QA
    ]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run ~10x faster on one thread than on two contended ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_tokenizer) -> Path:
    """runs/tiny: final/ holds the tiny Llama overfit on the suite's answers; its base is tiny_model_dir."""
    import torch
    from transformers import LlamaForCausalLM

    from chattune.data.conversation import Conversation
    from chattune.data.tokenize import tokenize_conversations

    root = tmp_path_factory.mktemp("eval")
    suite = write_jsonl(root / "suite.jsonl", suite_records())
    val = write_jsonl(root / "val.jsonl", conversations())
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    convs = [Conversation.model_validate(c) for c in conversations()]
    examples, _ = tokenize_conversations(convs, tiny_tokenizer, max_length=64)
    n = max(len(e) for e in examples)
    batch = {
        "input_ids": torch.tensor(
            [e.input_ids + [tiny_tokenizer.pad_token_id] * (n - len(e)) for e in examples]
        ),
        "attention_mask": torch.tensor([[1] * len(e) + [0] * (n - len(e)) for e in examples]),
        "labels": torch.tensor([e.labels + [-100] * (n - len(e)) for e in examples]),
    }
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):  # ~2 s; memorises the four answers (loss < 0.01 after 100 steps)
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    run = root / "runs" / "tiny"
    model.save_pretrained(run / "final")
    tiny_tokenizer.save_pretrained(run / "final")
    (run / "final" / "chat_defaults.json").write_text(json.dumps({"system_prompt": SYSTEM}))
    (run / "final" / "chattune.yaml").write_text(
        f"model:\n  name: {tiny_model_dir}\n"
        f"data:\n  val_file: {val}\n  max_length: 64\n"
        f"train:\n  batch_size: 2\n"
        f"eval:\n  suite_file: {suite}\n  suite_max_new_tokens: 20\n"
    )
    return run


def test_eval_run_against_base(run_dir: Path) -> None:
    result = CliRunner().invoke(app, ["eval", str(run_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "per category" in result.output and "validation loss" in result.output

    out = run_dir / "eval"
    m = json.loads((out / "metrics.json").read_text())
    assert m["schema_version"] == 1 and m["n_items"] == 4
    assert m["models"]["base"] == str(Path(m["models"]["base"]))
    assert m["generation"]["temperature"] == 0.0 and m["generation"]["max_new_tokens"] == 20
    assert m["generation"]["system_prompt"] == SYSTEM
    ft, base, delta = m["finetuned"]["overall"], m["base"]["overall"], m["delta"]["overall"]
    # The fine-tune learned the answers; the random base did not.
    assert ft["rubric_pass"] > base["rubric_pass"] and ft["rouge_l"] > 0.8 > base["rouge_l"]
    assert ft["val_loss"] < base["val_loss"] and ft["val_token_accuracy"] > base["val_token_accuracy"]
    assert delta["score"] == pytest.approx(ft["score"] - base["score"]) and delta["score"] > 0
    assert set(m["finetuned"]["per_category"]) == {"howto", "ambiguous", "greeting"}
    assert m["finetuned"]["per_category"]["ambiguous"]["behavior_pass"] == 1.0
    assert m["base"]["per_category"]["greeting"]["behavior_pass"] is None
    for key in ("ttft_p50", "ttft_p95", "latency_p50", "latency_p95", "tokens_per_s_p50"):
        assert ft[key] > 0 and base[key] > 0
    assert ft["latency_p95"] >= ft["latency_p50"]
    assert m["higher_is_better"]["score"] is True and m["higher_is_better"]["latency_p50"] is False

    records = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert [r["category"] for r in records] == ["howto", "howto", "ambiguous", "greeting"]
    assert records[0]["finetuned"]["answer"] == QA[0][1] and records[0]["base"]["answer"] != QA[0][1]

    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert "Most improved items" in html and QA[0][1] in html and "Per category" in html


def test_eval_reports_general_ability_kept(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both models answer the general questions with no system prompt; the fine-tune kept one of the
    base's two right answers, lost one and gained one. (The shipped 115 would find the random base right
    on none, so three questions are chosen whose outcome the memorised answers decide.)"""
    from chattune.evaluate import run as eval_run
    from chattune.evaluate.general import GeneralQuestion

    questions = (
        GeneralQuestion("how often should I descale", ""),  # anything is right: kept
        GeneralQuestion("hello", "^(?!hello how can I help)"),  # right unless the memorised greeting: lost
        GeneralQuestion("is it broken", "K2"),  # only the memorised clarifying question is right: gained
    )
    monkeypatch.setattr(eval_run, "general_questions", lambda: questions)
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["eval", str(run_dir), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    general = json.loads((out / "metrics.json").read_text())["general"]
    assert general["questions"] == 3 and general["base_right"] == 2 and general["finetuned_right"] == 2
    assert general["kept"] == 0.5 and general["gained"] == 1
    assert [x["question"] for x in general["lost"]] == ["hello"]
    assert general["lost"][0]["finetuned"] == QA[3][1]
    assert "general ability kept (no system prompt): 50%, 1 of the 2" in " ".join(result.output.split())
    html = (out / "report.html").read_text()
    assert "General ability kept" in html and "1 lost: the base" in html

    off = tmp_path / "off"
    result = CliRunner().invoke(app, ["eval", str(run_dir), "--out", str(off), "--no-general"])
    assert result.exit_code == 0 and json.loads((off / "metrics.json").read_text())["general"] is None


def test_greedy_replies_in_batches_match_one_by_one(run_dir: Path) -> None:
    from transformers import AutoTokenizer, LlamaForCausalLM

    from chattune.generate import GenerationSettings, generate_reply, greedy_replies

    model = LlamaForCausalLM.from_pretrained(run_dir / "final").eval()
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "final")
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    conversations = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}] for q, *_ in QA]
    conversations.append([{"role": "user", "content": "a longer request, so that the batch needs padding"}])
    batched = greedy_replies(model, tokenizer, conversations, max_new_tokens=20, batch_size=3)
    one_by_one = [
        generate_reply(model, tokenizer, c, GenerationSettings(temperature=0, max_new_tokens=20)).text
        for c in conversations
    ]
    assert batched == one_by_one and batched[:4] == [a for _, a, *_ in QA]
    assert (tokenizer.padding_side, tokenizer.pad_token) == (side, pad)  # left as it came


def test_eval_plain_model_alone(tiny_model_dir: Path, tmp_path: Path) -> None:
    suite = write_jsonl(tmp_path / "suite.jsonl", suite_records())
    out = tmp_path / "out"
    args = [
        "eval",
        str(tiny_model_dir),
        "--suite",
        str(suite),
        "--no-base",
        "--out",
        str(out),
        "--max-items",
        "2",
    ]
    result = CliRunner().invoke(app, [*args, "--max-new-tokens", "4"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_items"] == 2 and m["base"] is None and m["delta"] is None
    assert m["finetuned"]["overall"]["answer_tokens"] <= 4
    assert "val_loss" not in m["finetuned"]["overall"]  # no run config, no --val: no validation set
    assert m["general"]["questions"] >= 100 and m["general"]["base_right"] is None  # no base to keep from
    assert (out / "report.html").is_file()


def test_eval_errors_are_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    runner = CliRunner()
    suite = write_jsonl(tmp_path / "suite.jsonl", suite_records())
    bad = write_jsonl(
        tmp_path / "bad.jsonl", [suite_records()[0], {"messages": [{"role": "assistant", "content": "x"}]}]
    )
    cases = [
        (["eval", "embedded", "--suite", str(suite)], "pass --out DIR"),
        (["eval", str(tiny_model_dir), "--out", str(tmp_path / "o")], "no eval suite"),
        (
            ["eval", str(tiny_model_dir), "--suite", str(bad)],
            "bad.jsonl:2: the prompt must end on a user turn",
        ),
        (["eval", str(tiny_model_dir), "--suite", str(suite), "--judge-url", "http://x"], "go together"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), result.output


def test_suite_metrics_during_training(run_dir: Path) -> None:
    import torch  # noqa: F401
    from transformers import AutoTokenizer, LlamaForCausalLM

    from chattune.evaluate.during_training import SUITE_KEYS, suite_metrics

    model = LlamaForCausalLM.from_pretrained(run_dir / "final")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "final")
    suite = run_dir.parent.parent / "suite.jsonl"
    model.train()
    cfg = EvalConfig(suite_file=suite, suite_max_items=3, suite_max_new_tokens=16)
    out = suite_metrics(model, tokenizer, cfg, system=SYSTEM)
    assert model.training  # left as it came
    assert set(out) == set(SUITE_KEYS)
    assert all(0.0 <= v <= 1.0 for v in out.values())
    assert (
        out["suite_rubric_pass"] == 1.0 and out["suite_behavior_pass"] == 1.0 and out["suite_rouge_l"] > 0.9
    )
    assert suite_metrics(model, tokenizer, EvalConfig()) == {}

    no_refs = write_jsonl(
        run_dir.parent.parent / "norefs.jsonl", [{"messages": [{"role": "user", "content": "hello"}]}]
    )
    cfg = EvalConfig.model_construct(
        **{**EvalConfig().model_dump(), "suite_file": no_refs, "metric": "suite_rouge_l"}
    )
    with pytest.raises(ChattuneError, match="suite_rouge_l"):
        suite_metrics(model, tokenizer, cfg)
    assert math.isnan(suite_metrics(model, tokenizer, EvalConfig(suite_file=no_refs))["suite_rouge_l"])
