"""MLflow experiment tracking (`output.report_to: [mlflow]`): the resolved config as parameters, every
logged metric at its step, and at the end the final model and the run's reports as artifacts.

    tracker = MlflowRun.start(cfg, run_dir, resumed=False)   # main process only
    tracker.log(step, "train", {"loss": 2.1})
    tracker.end("FINISHED", artifacts=[run_dir / "final", run_dir / "loss.png"])

The store is a local SQLite file beside the runs unless a tracking URI is given, so it works offline and
`mlflow ui --backend-store-uri sqlite:///runs/mlflow.db` (the full `mlflow` package) browses it. A resumed
run continues the same MLflow run (its id is kept in <run>/mlflow_run.json); steps trained again after
the checkpoint are logged again at the same step numbers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chattune.config import RunConfig
from chattune.errors import ChattuneError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

RUN_FILE = "mlflow_run.json"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter value
PARAMS_PER_CALL = 100  # MLflow's limit on parameters per log_batch


def tracking_uri(cfg: RunConfig) -> str:
    if cfg.output.mlflow_tracking_uri:
        return cfg.output.mlflow_tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(cfg.output.dir / 'mlflow.db').resolve()}"


def flat_params(cfg: RunConfig) -> dict[str, str]:
    """The config as dotted keys (train.learning_rate, ...), values as text within MLflow's limit."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = str(value)[:MAX_PARAM_CHARS]

    walk("", cfg.model_dump(mode="json"))
    return out


class MlflowRun:
    def __init__(self, client: MlflowClient, run_id: str, uri: str):
        self.client, self.run_id, self.uri = client, run_id, uri

    @classmethod
    def start(cls, cfg: RunConfig, run_dir: Path, *, resumed: bool) -> MlflowRun:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as e:
            raise ChattuneError(
                "output.report_to includes mlflow, but MLflow is not installed: pip install 'chattune[mlflow]'"
            ) from e
        from mlflow.entities import Param

        uri = tracking_uri(cfg)
        client = MlflowClient(tracking_uri=uri)
        saved = run_dir / RUN_FILE
        if resumed and saved.is_file():
            run_id = json.loads(saved.read_text(encoding="utf-8"))["run_id"]
            client.update_run(run_id, status="RUNNING")
            return cls(client, run_id, uri)
        experiment = client.get_experiment_by_name(cfg.output.mlflow_experiment)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            artifacts = None
            if uri.startswith("sqlite:///") and not cfg.output.mlflow_tracking_uri:
                artifacts = (cfg.output.dir / "mlartifacts").resolve().as_uri()
            experiment_id = client.create_experiment(
                cfg.output.mlflow_experiment, artifact_location=artifacts
            )
        run = client.create_run(experiment_id, run_name=run_dir.name, tags={"chattune.run_dir": str(run_dir)})
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in flat_params(cfg).items()]
        for i in range(0, len(params), PARAMS_PER_CALL):
            client.log_batch(run_id, params=params[i : i + PARAMS_PER_CALL])
        saved.write_text(json.dumps({"run_id": run_id, "tracking_uri": uri}), encoding="utf-8")
        return cls(client, run_id, uri)

    def log(self, step: int, split: str, values: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(f"{split}/{key}", float(value), now, step)
            for key, value in values.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def end(self, status: str, artifacts: list[Path] | None = None) -> None:
        """status: FINISHED, FAILED or KILLED (MLflow's run states)."""
        for path in artifacts or []:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status=status)
