"""The dashboard's API (chattune ui), on run directories written here or trained with the tiny model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import yaml

from chattune.errors import ChattuneError
from chattune.train.status import read_status
from chattune.ui.app import create_app, serve_ui
from tests.helpers import serve_in_thread, tiny_run_config, write_jsonl
from tests.ui.helpers import fake_run

HEADERS = {"x-chattune": "1"}


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    fake_run(root, "alive", state="running")  # this test process is its training process
    crashed = fake_run(root, "crashed", state="running", lr=3e-4)
    body = json.loads((crashed / "status.json").read_text())
    (crashed / "status.json").write_text(json.dumps({**body, "pid": 2**22 + 7}))  # no such process
    fake_run(root, "done", state="finished")
    fake_run(root, "old", state=None).joinpath("final").mkdir()  # made before status.json existed
    fake_run(root, "halted", state="stopped")
    return root


@pytest.fixture
def client(runs, tmp_path):
    from fastapi.testclient import TestClient

    return TestClient(create_app(runs, cwd=tmp_path), base_url="http://127.0.0.1")


def test_runs_table_reads_state_from_the_run_directory(client):
    table = {r["id"]: r for r in client.get("/api/runs").json()["runs"]}
    assert {k: v["state"] for k, v in table.items()} == {
        "alive": "running",
        "crashed": "failed",  # recorded as running, but its process is gone
        "done": "finished",
        "old": "finished",
        "halted": "stopped",
    }
    assert (
        table["done"]["steps"] == 5
        and table["done"]["best"] == 2.5
        and table["done"]["peak_memory_gb"] == 6.0
    )
    assert table["done"]["method"] == "lora" or table["done"]["method"] in ("full", "qlora")


def test_status_file_that_is_not_an_object_reads_as_unreadable(tmp_path):
    # valid JSON that is not an object once raised AttributeError out of read_status (and the runs table)
    for body in ("[]", "null", '"running"'):
        (tmp_path / "status.json").write_text(body, encoding="utf-8")
        assert read_status(tmp_path) == {"state": "failed", "note": "status.json unreadable"}


def test_run_detail_metrics_and_compare(client):
    detail = client.get("/api/runs/done/detail").json()
    assert yaml.safe_load(detail["config"])["output"]["name"] == "done"
    assert [r["split"] for r in client.get("/api/runs/done/metrics").json()].count("train") == 5
    diff = client.get("/api/compare?ids=done,crashed").json()["config_diff"]
    assert diff == [
        {"key": "output.name", "values": {"done": "done", "crashed": "crashed"}},
        {"key": "train.learning_rate", "values": {"done": 1e-4, "crashed": 3e-4}},
    ]
    assert client.get("/api/runs/../../etc/detail").status_code == 404
    assert client.get("/api/runs/done/file/../../../etc/passwd").status_code == 404


def test_validation_errors_point_at_their_line(client):
    text = "model:\n  name: embedded\ntrain:\n  learnin_rate: 1e-4\n  max_steps: -1\n"
    r = client.post("/api/validate", json={"config": text}, headers=HEADERS).json()
    assert not r["ok"]
    by_line = {p["line"]: p["message"] for p in r["problems"]}
    assert "did you mean 'train.learning_rate'" in by_line[4]
    assert by_line[5].startswith("train.max_steps")
    assert client.post("/api/validate", json={"config": "model: {name: embedded}\n"}, headers=HEADERS).json()[
        "ok"
    ]
    # an invalid config is refused before any process starts
    r = client.post("/api/jobs", json={"kind": "train", "name": "x", "config": text}, headers=HEADERS)
    assert r.status_code == 422 and len(r.json()["problems"]) == 2


def test_guards_loopback_token_and_cross_site_posts(runs, tmp_path):
    from fastapi.testclient import TestClient

    plain = TestClient(create_app(runs, cwd=tmp_path), base_url="http://127.0.0.1")
    assert plain.post("/api/validate", json={"config": ""}).status_code == 403  # no X-Chattune header
    rebound = TestClient(create_app(runs, cwd=tmp_path), base_url="http://evil.example")
    assert rebound.get("/api/runs").status_code == 403
    locked = TestClient(create_app(runs, token="s3cret", cwd=tmp_path), base_url="http://10.0.0.5")
    assert locked.get("/api/runs").status_code == 401
    assert locked.get("/?token=s3cret").status_code == 200  # sets the cookie the page then sends
    assert locked.get("/api/runs").status_code == 200
    with pytest.raises(ChattuneError, match="--token"):
        serve_ui(runs, host="0.0.0.0", port=1)


def test_live_metrics_arrive_over_server_sent_events(runs, tmp_path):
    run = runs / "alive"
    with serve_in_thread(create_app(runs, cwd=tmp_path)) as base:
        url = base.removesuffix("/v1") + "/api/runs/alive/events"
        with httpx.stream("GET", url, timeout=10) as r:
            lines = r.iter_lines()
            seen: list[dict] = []
            appended = False
            for line in lines:
                if line.startswith("data: [") and (batch := json.loads(line[6:])):
                    seen += batch
                    if not appended:  # the training process logs a new step
                        with (run / "metrics.jsonl").open("a") as fh:
                            fh.write(json.dumps({"step": 6, "split": "train", "loss": 2.3}) + "\n")
                        appended = True
                    elif seen[-1]["step"] == 6:
                        break
    assert [r["step"] for r in seen if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_chat_streams_a_reply_from_the_generation_code(client, tiny_model_dir, tmp_path):
    body = {
        "model": str(tiny_model_dir),
        "messages": [{"role": "user", "content": "hello"}],
        "max_new_tokens": 8,
        "temperature": 0,
    }
    # the tiny model lives outside the runs folder and the working directory: refused
    assert client.post("/api/chat", json=body, headers=HEADERS).status_code == 403
    from fastapi.testclient import TestClient

    near = TestClient(create_app(tmp_path / "runs", cwd=tiny_model_dir.parent), base_url="http://127.0.0.1")
    with near.stream("POST", "/api/chat", json=body, headers=HEADERS) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    pieces = [e["piece"] for e in events if "piece" in e]
    assert pieces and events[-1]["done"] and events[-1]["stats"]["completion_tokens"] == 8


def test_data_browser_filters_and_diffs(tmp_path, tiny_tokenizer, client):
    from chattune.config.prepare import PrepareConfig
    from chattune.data.prepare import run

    def conv(user: str, reply: str) -> dict:
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}

    write_jsonl(
        tmp_path / "raw.jsonl",
        [
            conv(f"how do I reset kettle number {i}?", f"hold the dial for {i} seconds please")
            for i in range(6)
        ]
        + [conv("how do I reset kettle number 0?", "hold the dial for 0 seconds please")]  # a duplicate
        + [conv("what about the &amp; lid\u200b?", "the lid comes off &amp; goes back on")],  # fixed
    )
    cfg = PrepareConfig.model_validate(
        {"sources": [{"path": str(tmp_path / "raw.jsonl")}], "output_dir": str(tmp_path / "prepared")}
    )
    run(cfg, tiny_tokenizer, max_length=256)
    assert client.get("/api/datasets").json() == ["prepared"]
    d = client.get("/api/data", params={"dir": "prepared"}).json()
    assert d["total"] == 8 and d["facets"]["status"]["dropped"] == 1, d["facets"]  # the exact duplicate
    dropped = client.get("/api/data", params={"dir": "prepared", "status": "dropped"}).json()["entries"]
    assert all(e["status"] == "dropped" for e in dropped) and dropped[0]["reason"]
    fixed = client.get("/api/data", params={"dir": "prepared", "status": "fixed"}).json()["entries"]
    view = client.get("/api/data/record", params={"dir": "prepared", "index": fixed[0]["index"]}).json()
    assert "&amp;" in json.dumps(view["before"]) and "&amp;" not in json.dumps(view["after"])
    assert any(line.startswith("-") and "&amp;" in line for line in view["diff"])


def test_a_job_that_fails_is_recorded_with_its_log(client):
    r = client.post(
        "/api/jobs", json={"kind": "eval", "model": "no/such/model", "args": "--no-base"}, headers=HEADERS
    )
    ident = r.json()["id"]
    deadline = time.monotonic() + 60
    while (job := client.get(f"/api/jobs/{ident}").json())[
        "state"
    ] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job["state"] == "exit 2" and "error" in job["log_tail"]


@pytest.mark.slow
def test_stop_saves_a_checkpoint_and_resume_finishes(tmp_path, tiny_model_dir, train_file):
    """SIGTERM from the dashboard: the run saves where it is, reads as stopped, and --resume completes it."""
    from fastapi.testclient import TestClient

    root = tmp_path / "runs"
    client = TestClient(create_app(root, cwd=tmp_path), base_url="http://127.0.0.1")
    config = yaml.safe_dump(
        {
            "model": {"name": str(tiny_model_dir)},
            "data": {"train_file": str(train_file), "max_length": 128},
            "train": {"max_steps": 400, "log_every": 1, "precision": "fp32", "method": "full"},
            "eval": {"every_steps": 1000},
            "output": {"dir": str(root), "tensorboard": False},
        }
    )
    job = client.post(
        "/api/jobs", json={"kind": "train", "name": "s", "config": config}, headers=HEADERS
    ).json()
    deadline = time.monotonic() + 120
    while (
        client.get("/api/runs/s/metrics").status_code != 200
        or len(client.get("/api/runs/s/metrics").json()) < 3
    ):
        assert time.monotonic() < deadline, client.get(f"/api/jobs/{job['id']}").json()["log_tail"]
        time.sleep(0.3)
    assert client.post("/api/runs/s/stop", headers=HEADERS).json()["stopping"]
    while client.get(f"/api/jobs/{job['id']}").json()["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    summary = client.get("/api/runs/s/detail").json()
    assert summary["state"] == "stopped" and summary["checkpoints"][-1]["step"] == summary["steps"] < 400
    resumed = client.post("/api/runs/s/resume", headers=HEADERS).json()
    deadline = time.monotonic() + 240
    while client.get(f"/api/jobs/{resumed['id']}").json()["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert read_status(root / "s")["state"] == "finished"
    assert client.get("/api/runs/s/metrics").json()[-1]["step"] == 400


def test_cli_ui_refuses_the_network_without_a_token(tmp_path):
    from typer.testing import CliRunner

    from chattune.cli import app

    r = CliRunner().invoke(app, ["ui", "--runs", str(tmp_path), "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "--token" in r.output


def test_sigterm_stops_training_with_a_checkpoint_and_resume_finishes(tmp_path, tiny_model_dir, train_file):
    """What the dashboard's stop button does to a run: finish the step, save, say `stopped`; then resume."""
    import os
    import signal

    from chattune.train import checkpoint as ckpt
    from chattune.train import run
    from chattune.train.faults import TrainingInterrupted

    cfg = tiny_run_config(tiny_model_dir, train_file, tmp_path, "output.tensorboard=false")

    def stop_at_first_eval(step: int, metrics: dict) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the loop: no process dies here

    with pytest.raises(TrainingInterrupted, match="after step 4"):
        run(cfg, on_eval=stop_at_first_eval)
    assert read_status(cfg.run_dir)["state"] == "stopped"
    assert ckpt.load_state(ckpt.latest_checkpoint(cfg.run_dir / "checkpoints")).step == 4
    assert not (cfg.run_dir / "final").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
    result = run(cfg, resume=True)
    assert result.steps == 12 and read_status(cfg.run_dir)["state"] == "finished"
