"""train.backend: openai against a local stand-in of OpenAI's API (tests/openai_standin.py), driven with
the real openai SDK through chattune's CLI. Offline: the stand-in listens on 127.0.0.1."""

import json

import pytest
from typer.testing import CliRunner

from chattune.cli import app
from tests.hosted.openai_standin import StandIn

runner = CliRunner()
pytestmark = pytest.mark.timeout(120)  # a stuck stand-in must not hold the suite
BASE = "gpt-4o-mini-2024-07-18"
SYSTEM = "You are Kit, Kettlebyte support."


def conversations(n, marker_at=None):
    rows = []
    for i in range(n):
        answer = "FAIL_VALIDATION" if i == marker_at else f"Descale model K{i} with citric acid."
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"How do I descale the K{i}?"},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    return rows


def write(path, rows, blank_after=None):
    lines = [json.dumps(r) for r in rows]
    if blank_after is not None:
        lines.insert(blank_after, "")  # a blank line: source lines and uploaded examples differ
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-standin")
    with StandIn() as server:
        yield server


def make_config(tmp_path, api, train_rows, *, val_rows=None, extra="", blank_after=None):
    train = write(tmp_path / "train.jsonl", train_rows, blank_after)
    val = f"  val_file: {write(tmp_path / 'val.jsonl', val_rows)}\n" if val_rows else ""
    path = tmp_path / "hosted.yaml"
    path.write_text(
        f"model:\n  name: {BASE}\ndata:\n  train_file: {train}\n{val}train:\n  backend: openai\n  epochs: 2\n"
        f"openai:\n  base_url: {api.base_url}\n  poll_seconds: 0.01\n  max_retries: 3\n{extra}"
        f"output:\n  dir: {tmp_path / 'runs'}\n"
    )
    return path


def state(tmp_path):
    return json.loads((tmp_path / "runs" / "hosted" / "openai_job.json").read_text())


def test_train_uploads_creates_follows_and_records_the_job(tmp_path, api):
    cfg = make_config(tmp_path, api, conversations(12), val_rows=conversations(3))
    api.rate_limit_next = 2  # the SDK retries these with back-off (retry-after-ms)
    result = runner.invoke(app, ["train", str(cfg), "--yes"])
    assert result.exit_code == 0, result.output
    assert "estimated cost" in result.output and "billed tokens" in result.output
    assert sum(1 for _, _, s in api.requests if s == 429) == 2

    s = state(tmp_path)
    assert s["status"] == "succeeded" and s["fine_tuned_model"].startswith(f"ft:{BASE}")
    job = api.jobs[s["job_id"]]
    assert job["method"] == {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": "auto"}
        },
    }
    assert job["seed"] == 42 and job["validation_file"] == s["files"]["validation"]["id"]
    assert s["result_metrics"]["valid_loss"] == pytest.approx(2.2 / 4)
    assert len(s["checkpoints"]) == 3
    run = tmp_path / "runs" / "hosted"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4]
    assert [r["loss"] for r in records if r["split"] == "train"] == pytest.approx([2.0, 1.0, 2 / 3, 0.5])
    assert any(r["split"] == "eval" and "val_token_accuracy" in r for r in records)
    assert (run / "loss.png").is_file() and any((run / "tensorboard").iterdir())
    assert (run / "result.csv").read_text().startswith("step,train_loss")

    # chat and eval go through the API: the fine-tune against the hosted base, latency included
    chat = runner.invoke(app, ["chat", str(run), "-p", "descaling"])
    assert chat.exit_code == 0, chat.output
    assert "Tuned: thanks for asking about descaling" in chat.output
    assert api.chat_requests[-1]["messages"][0] == {"role": "system", "content": SYSTEM}  # trained prompt
    suite = tmp_path / "suite.jsonl"
    suite.write_text(
        json.dumps(
            {
                "messages": [{"role": "user", "content": "descaling"}],
                "reference": "thanks for asking about descaling",
            }
        )
        + "\n"
    )
    ev = runner.invoke(app, ["eval", str(run), "--suite", str(suite)])
    assert ev.exit_code == 0, ev.output
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["models"] == {"finetuned": str(run), "base": BASE}
    assert metrics["delta"]["overall"]["rouge_l"] > 0.5
    assert metrics["finetuned"]["overall"]["latency_p50"] > 0 and metrics["base"]["overall"]["ttft_p50"] > 0
    assert metrics["openai_job"]["fine_tuned_model"] == s["fine_tuned_model"]
    assert {r["model"] for r in api.chat_requests} == {s["fine_tuned_model"], BASE}


def test_rerun_reuses_uploads_and_refuses_a_second_job(tmp_path, api):
    cfg = make_config(tmp_path, api, conversations(6))
    api.lose_upload_answer = 1  # the upload lands but its answer is a 502
    assert runner.invoke(app, ["train", str(cfg), "--yes"]).exit_code == 0
    assert len(api.files) == 2  # the training file once (no duplicate from the retry) + the result file
    again = runner.invoke(app, ["train", str(cfg), "--yes"])
    assert again.exit_code == 2 and "--resume" in again.output
    fresh = runner.invoke(app, ["train", str(cfg), "--yes", "output.overwrite=true"])
    assert fresh.exit_code == 0, fresh.output
    assert "already uploaded" in fresh.output
    assert api.count("POST", "/v1/files") == 1 and len(api.jobs) == 2


def test_confirmation_declined_uploads_nothing(tmp_path, api):
    cfg = make_config(tmp_path, api, conversations(4))
    result = runner.invoke(app, ["train", str(cfg)], input="n\n")
    assert result.exit_code == 2 and "not confirmed" in result.output
    assert api.files == {} and api.jobs == {}


def test_bad_record_stops_before_upload_naming_file_and_line(tmp_path, api):
    rows = conversations(4)
    rows[2]["messages"][1]["role"] = "robot"
    cfg = make_config(tmp_path, api, rows)
    result = runner.invoke(app, ["train", str(cfg), "--yes"])
    assert result.exit_code == 2
    assert "train.jsonl:3: unknown role 'robot'" in result.output
    assert api.requests == []


def test_failed_validation_is_mapped_back_to_the_source_line(tmp_path, api):
    # Example 3 of the upload is line 4 of the file, because of a blank line after line 1.
    cfg = make_config(tmp_path, api, conversations(5, marker_at=2), blank_after=1)
    result = runner.invoke(app, ["train", str(cfg), "--yes"])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "train.jsonl:4:" in out and "invalid_training_file" in out and "Example 3" in out
    assert state(tmp_path)["status"] == "failed"


def test_detach_resume_and_cancel(tmp_path, api, monkeypatch):
    import chattune.hosted.job as job_mod

    cfg = make_config(tmp_path, api, conversations(6), val_rows=conversations(2))
    real = job_mod._handle_event

    def interrupt_at_step_2(ev, state, *args):
        real(ev, state, *args)
        if state.get("last_step") == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(job_mod, "_handle_event", interrupt_at_step_2)
    detached = runner.invoke(app, ["train", str(cfg), "--yes"])
    assert detached.exit_code == 0 and "--resume" in detached.output
    s = state(tmp_path)
    assert api.jobs[s["job_id"]]["status"] == "running"  # detaching did not cancel

    monkeypatch.setattr(job_mod, "_handle_event", real)
    resumed = runner.invoke(app, ["train", str(cfg), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert api.count("POST", "/v1/fine_tuning/jobs") == 1
    steps = [json.loads(x)["step"] for x in (tmp_path / "runs/hosted/metrics.jsonl").read_text().splitlines()]
    assert [x for i, x in enumerate(steps) if i % 2 == 0] == [1, 2, 3, 4]  # no step lost or repeated

    cancel = runner.invoke(app, ["train", str(cfg), "--cancel"])
    assert cancel.exit_code == 2 and "already succeeded" in cancel.output  # the API's error, one line


def test_cancel_a_running_job(tmp_path, api, monkeypatch):
    import chattune.hosted.job as job_mod

    cfg = make_config(tmp_path, api, conversations(4))
    monkeypatch.setattr(
        job_mod,
        "follow",
        lambda client, cfg, state, console: job_mod.HostedResult(
            cfg.run_dir, state["job_id"], state["status"]
        ),
    )
    assert runner.invoke(app, ["train", str(cfg), "--yes"]).exit_code == 0
    result = runner.invoke(app, ["train", str(cfg), "--cancel"])
    assert result.exit_code == 0, result.output
    assert next(iter(api.jobs.values()))["status"] == "cancelled" and state(tmp_path)["status"] == "cancelled"


def test_preference_pairs_start_a_dpo_job(tmp_path, api):
    pairs = [
        {
            "input": {"messages": [{"role": "user", "content": f"Kettle K{i} beeps?"}]},
            "preferred_output": [{"role": "assistant", "content": "Descale it."}],
            "non_preferred_output": [{"role": "assistant", "content": "No idea."}],
        }
        for i in range(4)
    ]
    cfg = make_config(tmp_path, api, pairs, extra="  beta: 0.2\n")
    result = runner.invoke(app, ["train", str(cfg), "--yes"])
    assert result.exit_code == 0, result.output
    method = next(iter(api.jobs.values()))["method"]
    assert method["type"] == "dpo" and method["dpo"]["hyperparameters"]["beta"] == 0.2


def test_api_errors_are_one_line(tmp_path, api, monkeypatch):
    cfg = make_config(tmp_path, api, conversations(4))
    bad_model = runner.invoke(app, ["train", str(cfg), "--yes", "model.name=gpt-nope"])
    assert bad_model.exit_code == 2
    assert (
        "OpenAI API, creating the fine-tuning job: 400" in bad_model.output
        and "model_not_available" in bad_model.output
    )
    api.server_error_next = 10  # more than max_retries (3): the error reaches the user
    result = runner.invoke(app, ["train", str(cfg), "--yes", "output.name=other"])
    assert result.exit_code == 2 and "500" in result.output and "Traceback" not in result.output
    assert api.count("GET", "/v1/files", 500) == 4  # one try + three retries
    monkeypatch.delenv("OPENAI_API_KEY")
    assert (
        "OPENAI_API_KEY is not set"
        in runner.invoke(app, ["train", str(cfg), "--yes", "output.name=x"]).output
    )
