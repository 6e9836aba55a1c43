"""MLflow against a real `mlflow server` on 127.0.0.1, stopped and started by the tests to make outages.

One run folder lives through the module, as a user's run would:
1. a 2-process job runs while the server is down (not started yet): it finishes, and `vt-mlflow-sync` delivers its
   tracking once the server is up;
2. the job is resumed (resume=auto) with more steps; mid-run the server is stopped and started again.
At the end the server holds one MLflow run with every step exactly once, the params, tags and artifacts.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framework.tracking.server import LocalServer
from tests.conftest import PACED, REPO, paused, run_training, tiny_overrides

pytestmark = pytest.mark.mlflow_server

FIRST_STEPS, TOTAL_STEPS = 8, 40
SECRET = "s3cret-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = LocalServer(tmp_path_factory.mktemp("mlflow_server"))
    yield s
    s.stop()


def client(server):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=server.uri)


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "mlflow_run.json").read_text())


def last_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return json.loads(lines[-1])["step"] if lines else 0


def wait_for(condition, proc, what: str, timeout: float = 240):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"the job ended while waiting for {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def steps_on_server(server, run_id: str | None, key: str = "train/loss") -> list[int]:
    if run_id is None or not server.answers():
        return []
    return [m.step for m in client(server).get_metric_history(run_id, key)]


@pytest.fixture(scope="module")
def offline_run(server, tiny_data, tmp_path_factory):
    """Phase 1: the server is down for the whole job; then it starts and vt-mlflow-sync delivers."""
    run_dir = tmp_path_factory.mktemp("mlflow_run") / "run"
    overrides = tiny_overrides(tiny_data, run_dir, PACED, f"trainer.max_steps={FIRST_STEPS}", "trainer.eval=false",
                               f"logging.mlflow.tracking_uri={server.uri}")
    job = run_training(overrides)
    before_sync = record(run_dir)
    server.start()
    sync = subprocess.run([sys.executable, "-m", "framework.tracking.sync", str(run_dir)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    return run_dir, job, before_sync, sync


@pytest.fixture(scope="module")
def resumed_run(offline_run, server, tiny_data):
    """Phase 2: resume with more steps; the server is killed mid-run and started again while training goes on."""
    run_dir, *_ = offline_run
    run_id = record(run_dir)["run_id"]
    # with credentials in the URI, as for a server behind basic auth (this one ignores them): used, not stored
    with_credentials = server.uri.replace("http://", f"http://alice:{SECRET}@")
    overrides = tiny_overrides(tiny_data, run_dir, PACED, f"trainer.max_steps={TOTAL_STEPS}",
                               f"logging.mlflow.tracking_uri={with_credentials}")
    cmd = [sys.executable, "-m", "launch.local", "--nproc=2", *overrides]
    with open(run_dir.parent / "resumed.log", "w") as log:
        job = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(lambda: len(steps_on_server(server, run_id)) >= FIRST_STEPS + 5, job, "delivery before outage")
            server.stop()
            down_at = last_step(run_dir)
            wait_for(lambda: last_step(run_dir) >= down_at + 5, job, "training progress during the outage")
            # the job is paused while the server boots, only so that the boot (10-50 s on 2 busy cores) cannot
            # outlast the job: the outage lasts from stop to start either way
            with paused(job.pid):
                up_at = last_step(run_dir)
                server.start()
            # delivery resumes by itself: the steps logged while the server was down reach it during the job
            wait_for(lambda: max(steps_on_server(server, run_id), default=0) >= up_at, job, "delivery after outage")
            caught_up_at = last_step(run_dir)
            print(f"server down at step {down_at}, up at step {up_at}, caught up at step {caught_up_at}")
            job.wait(timeout=300)
        finally:
            if job.poll() is None:
                job.kill()
    output = (run_dir.parent / "resumed.log").read_text()
    return run_dir, job.returncode, output, (down_at, up_at, caught_up_at)


def test_server_down_at_start_training_finishes_and_sync_delivers(offline_run, server):
    run_dir, job, before_sync, sync = offline_run
    assert job.returncode == 0, job.stderr[-3000:]
    assert before_sync["run_id"] is None, "no server, so no MLflow run yet"
    assert f"vt-mlflow-sync {run_dir}" in job.stderr  # the job says how to deliver later
    assert sync.returncode == 0, sync.stderr
    run_id = record(run_dir)["run_id"]
    assert f"to MLflow run {run_id} at {server.uri}" in sync.stdout
    run = client(server).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["run_dir"] == str(run_dir)
    assert steps_on_server(server, run_id) == list(range(1, FIRST_STEPS + 1))
    assert run.data.params["trainer.max_steps"] == str(FIRST_STEPS)


def test_resumed_job_continues_the_same_mlflow_run(offline_run, resumed_run, server):
    run_dir, returncode, output, _ = resumed_run
    assert returncode == 0, output[-3000:]
    assert f"resumed from {run_dir / 'checkpoints' / f'step{FIRST_STEPS:08d}'}" in output
    run_id = record(run_dir)["run_id"]
    assert len(client(server).search_runs([client(server).get_run(run_id).info.experiment_id])) == 1
    assert f"MLflow run {run_id}" in output


def test_outage_mid_run_loses_and_duplicates_nothing(resumed_run, server):
    """Every step once, in the order logged: the steps logged while the server was down included."""
    run_dir, returncode, output, (down_at, up_at, caught_up_at) = resumed_run
    assert returncode == 0, output[-3000:]
    assert FIRST_STEPS < down_at < up_at < TOTAL_STEPS
    assert caught_up_at < TOTAL_STEPS, "the waiting metrics were delivered at the job's end, not when the server returned"
    assert "MLflow unreachable" in output and "MLflow reachable again" in output
    run_id = record(run_dir)["run_id"]
    local = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    history = client(server).get_metric_history(run_id, "train/loss")
    assert [m.step for m in history] == list(range(1, TOTAL_STEPS + 1))
    assert [m.value for m in history] == [m["train/loss"] for m in local]
    assert len(steps_on_server(server, run_id, "system/process_rss_megabytes")) >= 2


def test_params_metrics_artifacts_and_tags_read_back(resumed_run, server, tmp_path):
    run_dir, returncode, output, _ = resumed_run
    assert returncode == 0, output[-3000:]
    c = client(server)
    run = c.get_run(record(run_dir)["run_id"])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["data.batch_size"] == "2" and params["deepspeed.zero_stage"] == "0"
    # MLflow params cannot change: the first job's value stays; the resumed job's config is the artifact
    assert params["trainer.max_steps"] == str(FIRST_STEPS)
    config = Path(c.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path)))
    assert f"max_steps: {TOTAL_STEPS}" in config.read_text()
    assert {"config.yaml", "eval.json", "eval"} <= {a.path for a in c.list_artifacts(run.info.run_id)}
    pooled = json.loads((run_dir / "eval.json").read_text())["phase"]["frame_pooled"]
    assert run.data.metrics["eval/phase/frame_pooled/accuracy"] == pooled["accuracy"]
    assert run.data.tags["last_checkpoint"] == str(run_dir / "checkpoints" / f"step{TOTAL_STEPS:08d}")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert run.data.tags["git_commit"] == head


def test_the_credentials_of_the_tracking_uri_are_nowhere_in_the_run(resumed_run, server):
    """Not in config.yaml, mlflow_run.json, the outbox, the job's output, or the run's params and artifacts."""
    run_dir, returncode, output, _ = resumed_run
    assert returncode == 0, output[-3000:]
    assert record(run_dir)["tracking_uri"] == server.uri
    assert f"tracking_uri: {server.uri.replace('http://', 'http://***@')}" in (run_dir / "config.yaml").read_text()
    files = [p for p in run_dir.iterdir() if p.is_file() and p.suffix in (".yaml", ".json", ".jsonl", ".log")]
    assert all(SECRET not in p.read_text() for p in files) and SECRET not in output
    run = client(server).get_run(record(run_dir)["run_id"])
    assert all(SECRET not in str(v) for v in run.data.params.values())


def test_sync_refuses_a_folder_without_an_outbox(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "framework.tracking.sync", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"{tmp_path} holds no MLflow outbox" in proc.stderr
