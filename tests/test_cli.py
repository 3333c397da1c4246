"""The commands as a user runs them, in-process (typer's CliRunner)."""

import pytest
import typer
from typer.testing import CliRunner

from chattune.cli import app
from tests.helpers import support_conversations, write_jsonl

runner = CliRunner()


@pytest.fixture
def run_config(tmp_path, tiny_model_dir):
    train = write_jsonl(tmp_path / "train.jsonl", support_conversations(24))
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"model:\n  name: {tiny_model_dir}\ndata:\n  train_file: {train}\n  val_fraction: 0.25\n  max_length: 128\n"
        f"train:\n  max_steps: 4\n  learning_rate: 3.0e-3\neval:\n  every_steps: 2\noutput:\n  dir: {tmp_path / 'runs'}\n"
    )
    return path


def _commands(command, path=()):
    """Every command and group the Typer app registers, as (argv path, command), the app itself first."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(typer.main.get_command(app)))
BOX = str.maketrans("", "", "│╭╮╰╯─")  # rich's panel borders, which wrapped help lines run into


def _flat(text: str) -> str:
    return " ".join(text.translate(BOX).split())


def test_every_verb_of_the_workflow_is_enumerated():
    """The help test below runs for whatever the app registers; this pins that the walk finds them."""
    verbs = {" ".join(path) for path in COMMANDS}
    assert {
        "train",
        "validate",
        "chat",
        "doctor",
        "eval",
        "augment",
        "sweep",
        "serve",
        "export",
        "ui",
    } <= verbs
    assert {"data", "data prepare", "data inspect", "scenarios", "scenarios build"} <= verbs


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda path: " ".join(path) or "chattune")
def test_help_of_every_command_describes_it_and_its_options(path):
    command = COMMANDS[path]
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    out = _flat(result.output)
    assert _flat(f"Usage: chattune {' '.join(path)}") in out
    assert command.help and _flat(command.help.split("\n\n")[0]) in out  # its own description
    for param in (p for p in command.params if not getattr(p, "hidden", False)):
        for opt in param.opts if param.param_type_name == "option" else [param.name]:
            assert opt in out, f"{opt} missing from `chattune {' '.join(path)} --help`"
        if getattr(param, "help", None):
            assert _flat(param.help) in out, param.help
    for name, sub in getattr(command, "commands", {}).items():  # a group lists its commands
        assert name in out and _flat(sub.help.split("\n\n")[0])[:40] in out


def test_misspelt_key_exits_2_naming_the_closest_key(run_config):
    result = runner.invoke(app, ["train", str(run_config), "train.learnig_rate=1e-3"])
    assert result.exit_code == 2
    assert "did you mean 'train.learning_rate'" in result.output


def test_missing_data_file_is_one_clear_line(run_config, tmp_path):
    result = runner.invoke(app, ["validate", str(run_config), f"data.train_file={tmp_path / 'nope.jsonl'}"])
    assert result.exit_code == 2
    assert "nope.jsonl: no such file" in result.output


def test_bad_record_names_file_line_and_field(run_config, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
        '{"messages": [{"role": "robot", "content": "beep"}]}\n'
    )
    result = runner.invoke(app, ["validate", str(run_config), f"data.train_file={bad}"])
    assert result.exit_code == 2
    assert "bad.jsonl:2: unknown role 'robot'" in result.output and "messages[0].role" in result.output


def test_validate_shows_statistics_and_the_trained_tokens(run_config):
    result = runner.invoke(app, ["validate", str(run_config)])
    assert result.exit_code == 0, result.output
    assert "config ok" in result.output and "one training example" in result.output
    # 24 conversations of 8 distinct: each trained once (recipe auto), the 16 repeats named, 2 of 8 held out
    assert "16 conversation(s) repeating another" in _flat(result.output)
    assert "kept" in result.output and "6 conversations ->" in result.output


def test_train_then_resume_then_chat(run_config, tmp_path):
    result = runner.invoke(app, ["train", str(run_config)])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "tiny"
    assert (run_dir / "final" / "model.safetensors").is_file()
    again = runner.invoke(app, ["train", str(run_config)])
    assert again.exit_code == 2 and "--resume" in again.output
    longer = runner.invoke(app, ["train", str(run_config), "train.max_steps=6", "--resume"])
    assert longer.exit_code == 0 and "resuming from" in longer.output and "6 steps" in longer.output
    chat = runner.invoke(
        app, ["chat", str(run_dir), "-p", "hello", "--temperature", "0", "--max-new-tokens", "5"]
    )
    assert chat.exit_code == 0, chat.output
    assert "tokens, first after" in chat.output


def test_doctor_reports_hardware_and_a_memory_estimate(run_config):
    result = runner.invoke(app, ["doctor", str(run_config)])
    assert result.exit_code == 0, result.output
    for fragment in ("accelerator", "torch", "transformers", "full", "lora", "recommendation: train.method="):
        assert fragment in result.output
