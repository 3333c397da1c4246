"""Sweeps on a tiny random Llama: grid, TPE, pruning, bad spaces, a killed sweep, two workers, results.

Trials are a few optimizer steps each. Torch runs on one thread here: on a shared 2-core machine two
threads of a tiny model spend most of their time waiting for each other (0.6 s vs 2-20 s a trial).
"""

from __future__ import annotations

import itertools
import json
import signal
from pathlib import Path

import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from chattune.cli import app
from chattune.config import load_config
from chattune.errors import ChattuneError, ConfigError
from chattune.sweep.run import open_study, run_sweep
from chattune.sweep.space import validate_space
from chattune.train import run as train_run
from tests.helpers import ROOT
from tests.sweep.helpers import LR_SCHED_GRID, sweep_process, trials_of, wait_for, write_config


def test_grid_runs_every_combination_once_and_writes_the_results(tmp_path, tiny_model_dir, train_file):
    cfg_path = write_config(tmp_path, tiny_model_dir, train_file, {"sampler": "grid", "space": LR_SCHED_GRID})
    result = CliRunner().invoke(app, ["sweep", str(cfg_path)])
    assert result.exit_code == 0, result.output
    trials = trials_of(cfg_path)
    combos = [(t.params["train.learning_rate"], t.params["train.scheduler"]) for t in trials]
    assert sorted(combos) == sorted(itertools.product([3e-4, 3e-3], ["cosine", "constant"]))
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["steps"] == 4 for t in trials)
    # every trial is a normal run with its own directory; only the best keeps its weights
    best = min(trials, key=lambda t: t.value)
    for t in trials:
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir.name == f"trial-{t.number:04d}" and (run_dir / "metrics.jsonl").is_file()
        assert (run_dir / "final").is_dir() == (t.number == best.number)

    root = tmp_path / "runs" / "s-sweep"
    rows = (root / "trials.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("number,status,val_loss,params.train.learning_rate")
    column = rows[0].split(",").index("peak_rss_gb")
    assert all(float(r.split(",")[column]) > 0.1 for r in rows[1:])  # peak memory recorded per trial
    plots = {p.name for p in (root / "plots").glob("*.png")}
    assert plots == {
        "optimization_history.png",
        "intermediate_values.png",
        "param_importances.png",
        "parallel_coordinate.png",
        "learning_rate.png",
    }
    assert (root / "summary.html").read_text().count("data:image/png;base64,") == 5
    assert "trials" in result.output and f"best: trial {best.number}" in result.output

    # best.yaml: the base config with the best parameters, no sweep section, and it trains
    best_cfg = load_config(root / "best.yaml", ["train.max_steps=2", "eval.every_steps=null"])
    assert best_cfg.sweep is None and best_cfg.output.name == "s-best"
    assert (best_cfg.train.learning_rate, best_cfg.train.scheduler) == (
        best.params["train.learning_rate"],
        best.params["train.scheduler"],
    )
    assert (
        train_run(best_cfg).steps == 2
        and (tmp_path / "runs" / "s-best" / "final" / "model.safetensors").is_file()
    )

    # a finished sweep started again runs nothing
    again = run_sweep(load_config(cfg_path), source=str(cfg_path))
    assert again.ran_here == 0 and again.counts["complete"] == 4


def test_tpe_with_a_seed_repeats_its_choices(tmp_path, tiny_model_dir, train_file):
    space = {
        "train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "train.warmup_steps": {"type": "int", "low": 0, "high": 2},
    }

    def params(name: str, seed: int) -> list[tuple]:
        cfg_path = write_config(
            tmp_path,
            tiny_model_dir,
            train_file,
            {"sampler": "tpe", "n_trials": 3, "seed": seed, "space": space},
            steps=2,
            name=name,
        )
        result = run_sweep(load_config(cfg_path), source=str(cfg_path))
        assert result.counts["complete"] == 3
        assert (
            result.best_yaml == tmp_path / "runs" / f"{name}-sweep" / "best.yaml"
            and result.best_yaml.is_file()
        )
        return [tuple(sorted(t.params.items())) for t in trials_of(cfg_path)]

    first, second = params("a", seed=7), params("b", seed=7)
    assert first == second and len(set(first)) == 3
    assert all(1e-4 <= dict(p)["train.learning_rate"] <= 1e-2 for p in first)


def test_a_pruner_stops_trials_at_their_first_evaluation(tmp_path, tiny_model_dir, train_file):
    sweep = {
        "sampler": "grid",
        "space": {"train.learning_rate": {"type": "float", "values": [1e-3, 3e-3]}},
        "pruner": "threshold",
        "pruner_threshold": 0.01,
        "pruner_warmup_evals": 0,
    }
    cfg_path = write_config(tmp_path, tiny_model_dir, train_file, sweep, steps=6)
    result = run_sweep(load_config(cfg_path), source=str(cfg_path))
    trials = trials_of(cfg_path)
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.PRUNED]
    assert all(t.last_step == 2 and t.user_attrs["steps"] == 2 for t in trials)  # of 6
    assert result.best_yaml is None and result.counts["pruned"] == 2
    assert "pruned at step 2" in (tmp_path / "runs" / "s-sweep" / "trials.csv").read_text()


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        (
            {"train.learnig_rate": {"type": "float", "low": 1e-5, "high": 1e-3}},
            "sweep.space.train.learnig_rate: not a config key; did you mean 'train.learning_rate'?",
        ),
        ({"lora.rank": {"type": "int", "low": 4, "high": 8}}, "did you mean 'lora.r'?"),
        (
            {"lora.dropout": {"type": "float", "low": 0.0, "high": 1.5}},
            "lora.dropout: Input should be less than 1",
        ),
        (
            {"train.scheduler": {"type": "categorical", "choices": ["cosine", "exponential"]}},
            "train.scheduler: Input should be",
        ),
    ],
)
def test_a_bad_space_is_reported_at_load(tmp_path, tiny_model_dir, train_file, space, expected):
    cfg_path = write_config(
        tmp_path, tiny_model_dir, train_file, {"sampler": "random", "n_trials": 2, "space": space}
    )
    with pytest.raises(ConfigError) as e:
        run_sweep(load_config(cfg_path), source=str(cfg_path))
    assert expected in str(e.value) and str(cfg_path) in str(e.value)
    assert not (tmp_path / "runs").exists()


def test_grid_floats_need_values_and_the_cli_says_so(tmp_path, tiny_model_dir, train_file):
    cfg_path = write_config(
        tmp_path,
        tiny_model_dir,
        train_file,
        {"sampler": "grid", "space": {"train.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3}}},
    )
    result = CliRunner().invoke(app, ["sweep", str(cfg_path)])
    assert result.exit_code == 2
    assert "space.train.learning_rate: grid search needs a finite list of floats" in " ".join(
        result.output.split()
    )


@pytest.mark.slow  # a sweep in a subprocess
def test_a_killed_sweep_restarts_without_repeating_finished_trials(tmp_path, tiny_model_dir, train_file):
    sweep = {
        "sampler": "grid",
        "space": {"train.learning_rate": {"type": "float", "values": [1e-3, 2e-3, 3e-3]}},
        "heartbeat_seconds": 1,
        "grace_seconds": 2,
    }
    cfg_path = write_config(tmp_path, tiny_model_dir, train_file, sweep, steps=30, every=2)
    trials_dir = tmp_path / "runs" / "s-sweep" / "trials"
    proc = sweep_process(cfg_path)
    try:  # kill it in the second trial, once that has written a checkpoint
        wait_for(lambda: any((trials_dir / "trial-0001" / "checkpoints").glob("step-*")), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.stdout.close()
    first = trials_of(cfg_path)
    assert [t.state for t in first] == [TrialState.COMPLETE, TrialState.RUNNING]
    done_metrics = (trials_dir / "trial-0000" / "metrics.jsonl").read_text()

    result = run_sweep(load_config(cfg_path), source=str(cfg_path))
    trials = trials_of(cfg_path)
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    assert len(trials) == 4 and [t.number for t in by_state[TrialState.FAIL]] == [1]
    assert sorted(t.params["train.learning_rate"] for t in by_state[TrialState.COMPLETE]) == [
        1e-3,
        2e-3,
        3e-3,
    ]
    retry = next(t for t in trials if t.user_attrs.get("resumed_from") == 1)
    assert retry.params == trials[1].params and retry.state == TrialState.COMPLETE
    # the retry took over the dead trial's run directory and resumed from its checkpoint
    retry_dir = trials_dir / f"trial-{retry.number:04d}"
    assert (
        "resuming from" in (retry_dir / "train.log").read_text() and not (trials_dir / "trial-0001").exists()
    )
    evals = [
        json.loads(line)["step"]
        for line in (retry_dir / "metrics.jsonl").read_text().splitlines()
        if '"eval"' in line
    ]
    assert evals == sorted(set(evals)) and evals[-1] == 30
    assert (trials_dir / "trial-0000" / "metrics.jsonl").read_text() == done_metrics  # not run again
    assert result.ran_here == 2 and result.counts == {
        "complete": 3,
        "pruned": 0,
        "failed": 1,
        "running": 0,
        "waiting": 0,
    }


@pytest.mark.slow  # two sweep worker processes
def test_two_workers_share_one_study_without_running_a_trial_twice(tmp_path, tiny_model_dir, train_file):
    space = {
        "train.learning_rate": {"type": "float", "values": [1e-3, 2e-3, 3e-3]},
        "train.scheduler": {"type": "categorical", "choices": ["cosine", "constant"]},
    }
    cfg_path = write_config(
        tmp_path, tiny_model_dir, train_file, {"sampler": "grid", "space": space}, steps=16, every=8
    )
    open_study(load_config(cfg_path), source=str(cfg_path))  # what `chattune sweep CONFIG` does first
    workers = [sweep_process(cfg_path, "--worker") for _ in range(2)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = trials_of(cfg_path)
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both did some of the work
    # the main process finds the study done and only reports
    result = run_sweep(load_config(cfg_path), source=str(cfg_path))
    assert result.ran_here == 0 and (tmp_path / "runs" / "s-sweep" / "best.yaml").is_file()


def test_the_example_sweep_config_is_valid():
    cfg = load_config(ROOT / "examples/sweep.yaml")
    validate_space(cfg, "examples/sweep.yaml")
    assert cfg.sweep.sampler == "tpe" and cfg.sweep.space["train.learning_rate"].log


def test_a_worker_needs_a_started_study(tmp_path, tiny_model_dir, train_file):
    cfg_path = write_config(
        tmp_path, tiny_model_dir, train_file, {"sampler": "random", "n_trials": 1, "space": LR_SCHED_GRID}
    )
    with pytest.raises(ConfigError, match=r"no study 's' in sqlite:///.*start it with `chattune sweep"):
        run_sweep(load_config(cfg_path), source=str(cfg_path), worker=True)
    # and a study started with another config is not joined
    open_study(load_config(cfg_path), source=str(cfg_path))
    with pytest.raises(ConfigError, match=r"different config \(sweep.space, train.seed differ\)"):
        open_study(
            load_config(cfg_path, ["train.seed=1", "sweep.space={lora.r: {type: int, low: 2, high: 4}}"]),
            source=str(cfg_path),
        )


def test_a_sweep_whose_trials_all_fail_stops_after_three(tmp_path, tiny_model_dir):
    cfg_path = write_config(
        tmp_path,
        tiny_model_dir,
        tmp_path / "missing.jsonl",
        {"sampler": "random", "n_trials": 10, "space": LR_SCHED_GRID},
    )
    with pytest.raises(
        ChattuneError, match="3 trials failed in a row and none has completed; the last: .*missing.jsonl"
    ):
        run_sweep(load_config(cfg_path), source=str(cfg_path))
    trials = trials_of(cfg_path)
    assert [t.state for t in trials] == [TrialState.FAIL] * 3 and all(
        "missing.jsonl" in t.user_attrs["error"] for t in trials
    )
