"""`output.report_to: [mlflow]`: parameters, per-step metrics and artifacts in a local MLflow store."""

import json
import sys

import pytest

from chattune.config import load_config
from chattune.errors import ChattuneError
from chattune.train import run
from tests.helpers import tiny_run_config as config


def test_a_run_logs_its_config_metrics_and_artifacts_to_a_local_mlflow_store(
    tiny_model_dir, train_file, tmp_path
):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    cfg = config(tiny_model_dir, train_file, tmp_path, "output.report_to=[mlflow]", "train.log_every=2")
    run(cfg)

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("chattune")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.status == "FINISHED" and logged.info.run_name == "t"
    assert logged.data.params["train.learning_rate"] == "0.003"
    assert logged.data.params["model.name"] == str(tiny_model_dir)

    records = [json.loads(x) for x in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    history = client.get_metric_history(logged.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [
        (r["step"], pytest.approx(r["loss"])) for r in records if r["split"] == "train"
    ]
    evals = client.get_metric_history(logged.info.run_id, "eval/val_loss")
    assert [m.step for m in evals] == [4, 8, 12]

    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"final", "loss.png", "metrics.jsonl", "config.yaml"} <= artifacts
    assert "final/model.safetensors" in {a.path for a in client.list_artifacts(logged.info.run_id, "final")}
    assert not (cfg.run_dir / "tensorboard").exists()  # report_to named mlflow only


def test_mlflow_without_the_package_is_a_clear_error(tiny_model_dir, train_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    cfg = config(tiny_model_dir, train_file, tmp_path, "output.report_to=[mlflow]")
    with pytest.raises(ChattuneError, match=r"pip install 'chattune\[mlflow\]'"):
        run(cfg)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], ["tensorboard"]),
        (["output.tensorboard=false"], []),
        (["output.report_to=[mlflow]", "output.tensorboard=true"], ["tensorboard", "mlflow"]),
        (["output.report_to=[tensorboard,mlflow]", "output.tensorboard=false"], ["mlflow"]),
    ],
)
def test_the_older_tensorboard_switch_still_works(overrides, expected):
    assert load_config(None, overrides).output.report_to == expected
