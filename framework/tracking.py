"""Experiment tracking behind a small interface. Rank 0 gets an MlflowTracker, every other rank a no-op.

A resumed run reattaches to its MLflow run: the run id is kept in <run_dir>/mlflow_run.json.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path


class Tracker:
    run_id: str | None = None
    ui_command: str | None = None

    def log_params(self, params: dict) -> None: ...
    def log_metrics(self, metrics: dict, step: int) -> None: ...
    def log_artifact(self, path: Path) -> None: ...
    def set_tags(self, tags: dict) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...


class MlflowTracker(Tracker):
    def __init__(self, run_dir: Path, cfg, run_name: str):
        from mlflow.tracking import MlflowClient

        run_dir = Path(run_dir).resolve()
        self.uri = cfg.tracking_uri or f"sqlite:///{run_dir / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri)
        self.record = run_dir / "mlflow_run.json"
        self.run_id = self._reattach() or self._create(cfg.experiment, cfg.run_name or run_name, run_dir)
        self.ui_command = (f"{mlflow_executable()} ui --backend-store-uri {self.uri} --host 127.0.0.1 --port 5000"
                           if self.uri.startswith("sqlite") else f"open {self.uri}")

    def _reattach(self) -> str | None:
        if not self.record.is_file():
            return None
        saved = json.loads(self.record.read_text())
        if saved.get("tracking_uri") != self.uri:
            return None
        self.client.update_run(saved["run_id"], status="RUNNING")
        return saved["run_id"]

    def _create(self, experiment: str, run_name: str, run_dir: Path) -> str:
        exp = self.client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        run = self.client.create_run(exp_id, run_name=run_name, tags={"run_dir": str(run_dir),
                                                                      "git_commit": git_commit()})
        self.record.write_text(json.dumps({"run_id": run.info.run_id, "tracking_uri": self.uri}))
        return run.info.run_id

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in logged]
        for i in range(0, len(new), 100):  # MLflow caps a batch at 100 params
            self.client.log_batch(self.run_id, params=new[i:i + 100])

    def log_metrics(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def set_tags(self, tags: dict) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def close(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def mlflow_executable() -> str:
    """The mlflow next to this Python (the project's venv), so the printed command works without activating it."""
    import sys

    candidate = Path(sys.executable).parent / "mlflow"
    return str(candidate) if candidate.is_file() else "mlflow"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def build_tracker(cfg, is_main: bool) -> Tracker:
    if is_main and cfg.logging.mlflow.enabled:
        return MlflowTracker(cfg.run_path, cfg.logging.mlflow, run_name=cfg.name)
    return Tracker()
