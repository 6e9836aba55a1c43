"""Experiment tracking behind a small interface. Rank 0 gets an MlflowTracker, every other rank a no-op: nothing
on the other ranks logs, so the MLflow run id never has to travel to them.

The run folder is the unit of tracking: its outbox (outbox.py) holds every call, its mlflow_run.json names the
MLflow run, and the run's `run_dir` tag lets a resumed job, or `vt-mlflow-sync`, find the run again.
"""
from __future__ import annotations

import subprocess
from pathlib import Path


class Tracker:
    run_id: str | None = None
    ui_command: str | None = None

    def log_params(self, params: dict) -> None: ...
    def log_metrics(self, metrics: dict, step: int) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...


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
        from .mlflow_tracker import MlflowTracker

        return MlflowTracker(cfg.run_path, cfg.logging.mlflow, run_name=cfg.name, tags={"git_commit": git_commit()})
    return Tracker()
