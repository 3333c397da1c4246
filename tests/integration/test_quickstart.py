"""The real embedded model (SmolLM2-135M-Instruct) end to end, for a handful of steps. Marked slow."""

import json

import pytest
from typer.testing import CliRunner

from chattune.cli import app
from chattune.data.conversation import read_jsonl, write_jsonl
from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def test_fine_tune_the_embedded_model_then_chat(tmp_path):
    # Eight Kettlebyte conversations, trained and validated on the same set: the loss on them must fall.
    subset = tmp_path / "subset.jsonl"
    write_jsonl(subset, read_jsonl(ROOT / "examples/data/kettlebyte_train.jsonl")[:8])
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            str(ROOT / "examples/quickstart.yaml"),
            f"data.train_file={subset}",
            f"data.val_file={subset}",
            "data.max_length=256",
            "train.batch_size=2",
            "train.max_steps=4",
            "train.warmup_ratio=null",
            "train.learning_rate=1e-4",
            "eval.every_steps=2",
            f"output.dir={tmp_path}",
            "output.name=smol",
        ],
    )
    assert result.exit_code == 0, result.output
    evals = [json.loads(x) for x in (tmp_path / "smol" / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in evals if r["split"] == "eval"]
    assert len(val) == 2 and val[1] < val[0]
    chat = runner.invoke(
        app,
        [
            "chat",
            str(tmp_path / "smol"),
            "-p",
            "How do I reset my K2?",
            "--temperature",
            "0",
            "--max-new-tokens",
            "12",
        ],
    )
    assert chat.exit_code == 0, chat.output
    assert "tokens, first after" in chat.output


def test_validate_marks_the_trained_tokens_of_the_quickstart_data():
    result = CliRunner().invoke(app, ["validate", str(ROOT / "examples/quickstart.yaml")])
    assert result.exit_code == 0, result.output
    assert "321" in result.output and "one training example" in result.output
    assert "— Kit, Kettlebyte Support" in result.output
