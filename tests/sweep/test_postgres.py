"""Sweeps on a real PostgreSQL server: several workers, a killed worker, a restart, Hyperband, reports.

Needs CHATTUNE_TEST_POSTGRES_URL, which `.ci/run` exports after starting a throwaway server
(`source scripts/postgres.sh` does the same in a shell). Without it these tests skip, except under CI
(CI=true), where they fail: CI is where this path must be shown to work.
Each test uses its own study name and sweep directory on the one database.
"""

from __future__ import annotations

import itertools
import os
import signal
import uuid
from pathlib import Path

import pytest
from optuna.trial import TrialState

from chattune.config import load_config
from chattune.errors import ChattuneError
from chattune.sweep.run import open_study, run_sweep
from tests.sweep.helpers import sweep_process, trials_of, wait_for, write_config


@pytest.fixture(scope="module")
def pg_url() -> str:
    url = os.environ.get("CHATTUNE_TEST_POSTGRES_URL")
    problem = None
    if not url:
        problem = (
            "CHATTUNE_TEST_POSTGRES_URL is not set (`source scripts/postgres.sh` starts a server and sets it)"
        )
    else:
        try:
            import psycopg

            psycopg.connect(url, connect_timeout=10).close()
        except Exception as e:  # missing driver or no server
            problem = f"cannot reach PostgreSQL at CHATTUNE_TEST_POSTGRES_URL: {' '.join(str(e).split())}"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs PostgreSQL for the sweep tests: {problem}")
        pytest.skip(problem)
    assert url is not None
    return url


def pg_config(tmp_path: Path, model_dir: Path, train_file: Path, url: str, sweep: dict, **kw) -> Path:
    study = f"t-{uuid.uuid4().hex[:12]}"
    return write_config(tmp_path, model_dir, train_file, {"storage": url, "study_name": study, **sweep}, **kw)


GRID6 = {
    "train.learning_rate": {"type": "float", "values": [1e-3, 2e-3, 3e-3]},
    "train.scheduler": {"type": "categorical", "choices": ["cosine", "constant"]},
}


@pytest.mark.slow  # worker subprocesses, each importing torch
def test_three_workers_complete_a_grid_once_each_and_the_reports_come_from_the_db(
    tmp_path, tiny_model_dir, train_file, pg_url
):
    cfg_path = pg_config(
        tmp_path, tiny_model_dir, train_file, pg_url, {"sampler": "grid", "space": GRID6}, steps=4, every=4
    )
    open_study(load_config(cfg_path), source=str(cfg_path))
    workers = [sweep_process(cfg_path, "--worker") for _ in range(3)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs
    trials = trials_of(cfg_path)
    # six trials, no seventh: none ran twice, none was lost
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    combos = sorted((t.params["train.learning_rate"], t.params["train.scheduler"]) for t in trials)
    assert combos == sorted(itertools.product([1e-3, 2e-3, 3e-3], ["cosine", "constant"]))
    assert len({t.user_attrs["worker"] for t in trials}) >= 2

    # the reports, written by a process on "another machine" (its own sweep dir), from the database only
    elsewhere = tmp_path / "elsewhere"
    result = run_sweep(load_config(cfg_path, [f"sweep.dir={elsewhere}"]), source=str(cfg_path))
    assert result.ran_here == 0 and result.counts["complete"] == 6
    rows = (elsewhere / "trials.csv").read_text().splitlines()
    header, body = rows[0].split(","), [r.split(",") for r in rows[1:]]
    assert len(body) == 6
    by_number = {int(r[0]): dict(zip(header, r, strict=False)) for r in body}
    for t in trials:
        row = by_number[t.number]
        assert row["status"] == "complete" and float(row["val_loss"]) == pytest.approx(t.value)
        assert float(row["params.train.learning_rate"]) == t.params["train.learning_rate"]
    best = min(trials, key=lambda t: t.value)
    assert result.best_number == best.number
    summary = (elsewhere / "summary.html").read_text()
    assert f"{best.value:.4f}" in summary and summary.count("<tr") >= 7  # header + six trials


@pytest.mark.slow  # worker subprocesses, each importing torch
def test_a_worker_killed_mid_trial_is_retried_by_another_from_its_checkpoint(
    tmp_path, tiny_model_dir, train_file, pg_url
):
    sweep = {
        "sampler": "grid",
        "space": {"train.learning_rate": {"type": "float", "values": [1e-3, 3e-3]}},
        "heartbeat_seconds": 1,
        "grace_seconds": 3,
    }
    cfg_path = pg_config(tmp_path, tiny_model_dir, train_file, pg_url, sweep, steps=30, every=2)
    open_study(load_config(cfg_path), source=str(cfg_path))
    trials_dir = tmp_path / "runs" / "s-sweep" / "trials"
    victim = sweep_process(cfg_path, "--worker")
    try:  # SIGKILL it once trial 0 has a checkpoint: no clean-up, no goodbye to the database
        wait_for(lambda: any((trials_dir / "trial-0000" / "checkpoints").glob("step-*")), victim, 180)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        victim.kill()
        victim.stdout.close()
    assert [t.state for t in trials_of(cfg_path)][:1] == [TrialState.RUNNING]

    rescuer = sweep_process(cfg_path, "--worker")
    output = rescuer.communicate(timeout=300)[0]
    assert rescuer.returncode == 0, output
    trials = trials_of(cfg_path)
    assert trials[0].state == TrialState.FAIL
    retry = next(t for t in trials if t.user_attrs.get("resumed_from") == 0)
    assert retry.state == TrialState.COMPLETE and retry.params == trials[0].params
    assert retry.user_attrs["worker"] != trials[0].user_attrs["worker"]
    retry_log = (trials_dir / f"trial-{retry.number:04d}" / "train.log").read_text()
    assert "resuming from" in retry_log and not (trials_dir / "trial-0000").exists()
    complete = sorted(t.params["train.learning_rate"] for t in trials if t.state == TrialState.COMPLETE)
    assert complete == [1e-3, 3e-3] and len(trials) == 3


def test_a_restarted_sweep_continues_where_it_stopped(tmp_path, tiny_model_dir, train_file, pg_url):
    space = {"train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}
    cfg_path = pg_config(
        tmp_path,
        tiny_model_dir,
        train_file,
        pg_url,
        {"sampler": "tpe", "n_trials": 2, "space": space},
        steps=2,
    )
    first = run_sweep(load_config(cfg_path), source=str(cfg_path))
    before = {t.number: (t.params, t.value) for t in trials_of(cfg_path)}
    # the same study, a larger budget (n_trials is per process, not part of the study's identity)
    again = run_sweep(load_config(cfg_path, ["sweep.n_trials=4"]), source=str(cfg_path))
    trials = trials_of(cfg_path)
    assert first.ran_here == 2 and again.ran_here == 2 and len(trials) == 4
    assert {t.number: (t.params, t.value) for t in trials[:2]} == before  # the first two untouched
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_hyperband_prunes_the_trials_that_lag(tmp_path, tiny_model_dir, train_file, pg_url):
    # one Hyperband bracket (max/min resource < 3): every trial is compared at its first evaluation
    # with the others; a learning rate of 1e-9 learns nothing and lags the two that learn.
    sweep = {
        "sampler": "grid",
        "space": {"train.learning_rate": {"type": "float", "values": [1e-2, 3e-3, 1e-9]}},
        "pruner": "hyperband",
        "pruner_warmup_evals": 1,
        "seed": 3,
    }
    cfg_path = pg_config(tmp_path, tiny_model_dir, train_file, pg_url, sweep, steps=8, every=4)
    result = run_sweep(load_config(cfg_path), source=str(cfg_path))
    trials = trials_of(cfg_path)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert [t.params["train.learning_rate"] for t in pruned] == [1e-9], [(t.params, t.state) for t in trials]
    assert pruned[0].last_step == 4 and pruned[0].user_attrs["steps"] == 4  # stopped at the first rung
    assert result.counts == {"complete": 2, "pruned": 1, "failed": 0, "running": 0, "waiting": 0}


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        (
            "postgres//nobody@nowhere",
            "is not a database URL: write postgresql://USER:PASSWORD@HOST:5432/DATABASE",
        ),
        ("postgresql://u:p@127.0.0.1:1/db", "connection refused at 127.0.0.1:1: start PostgreSQL there"),
        ("mssql+nosuchdriver://u:p@h/db", "no SQLAlchemy dialect or driver for 'mssql+nosuchdriver'"),
    ],
)
def test_a_bad_storage_url_is_one_line_with_the_fix(tmp_path, tiny_model_dir, train_file, storage, expected):
    cfg_path = write_config(
        tmp_path, tiny_model_dir, train_file, {"sampler": "grid", "space": GRID6, "storage": storage}
    )
    with pytest.raises(ChattuneError) as e:
        open_study(load_config(cfg_path), source=str(cfg_path))
    assert expected in str(e.value) and "\n" not in str(e.value) and ":p@" not in str(e.value)


def test_a_missing_postgres_driver_says_which_extra_to_install(
    tmp_path, tiny_model_dir, train_file, monkeypatch
):
    import builtins

    real_import = builtins.__import__

    def no_psycopg(name, *args, **kwargs):
        if name.split(".")[0] in ("psycopg", "psycopg2"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    cfg_path = write_config(
        tmp_path,
        tiny_model_dir,
        train_file,
        {"sampler": "grid", "space": GRID6, "storage": "postgresql://u@h/db"},
    )
    with pytest.raises(ChattuneError, match=r"driver is not installed: pip install 'chattune\[postgres\]'"):
        open_study(load_config(cfg_path), source=str(cfg_path))
