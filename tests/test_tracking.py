"""The tracker's outbox on the default store (sqlite in the run folder), in one process: real MLflow, no server."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

from mlflow.tracking import MlflowClient

from framework.tracking.delivery import Delivery
from framework.tracking.mlflow_tracker import MlflowTracker
from framework.tracking.outbox import REJECTED, RunRecord
from tests.conftest import REPO


def tracked(run_dir, steps: int, extra: dict | None = None, log_checkpoint: bool = False) -> MlflowTracker:
    cfg = SimpleNamespace(tracking_uri=None, experiment="unit", run_name=None, system_metrics_every_s=None,
                          log_checkpoint=log_checkpoint)
    tracker = MlflowTracker(run_dir, cfg, "unit", tags={"git_commit": "abc"})
    tracker.log_params({"lr": 0.1})
    for step in range(1, steps + 1):
        tracker.log_metrics({"train/loss": 1.0 / step, **(extra or {} if step == 2 else {})}, step)
    return tracker


def store(run_dir) -> tuple[MlflowClient, str]:
    return MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}"), RunRecord.load(run_dir).run_id


def test_redelivery_after_a_crash_duplicates_nothing(tmp_path):
    """A crash between "sent" and "recorded" means the outbox is sent again, perhaps before the run id was even
    recorded: the run is found by its run_dir tag and must not change."""
    tracked(tmp_path, steps=5).close()
    c, run_id = store(tmp_path)
    record = RunRecord.load(tmp_path)
    record.delivered, record.run_id = 0, None  # as if nothing had been recorded
    record.save(tmp_path)
    Delivery(tmp_path).drain()
    assert [m.step for m in c.get_metric_history(run_id, "train/loss")] == [1, 2, 3, 4, 5]
    assert c.get_run(run_id).data.params == {"lr": "0.1"}
    assert RunRecord.load(tmp_path).run_id == run_id


def test_a_refused_entry_is_kept_aside_and_does_not_block_the_rest(tmp_path):
    tracked(tmp_path, steps=4, extra={"bad name?": 1.0}).close()  # MLflow refuses "?" in metric names
    c, run_id = store(tmp_path)
    assert [m.step for m in c.get_metric_history(run_id, "train/loss")] == [1, 3, 4]
    refused = [json.loads(line) for line in (tmp_path / REJECTED).read_text().splitlines()]
    assert [r["entry"]["step"] for r in refused] == [2]
    assert c.get_run(run_id).info.status == "FINISHED"


def test_artifacts_and_the_final_checkpoint_stay_in_the_run_folder(tmp_path, monkeypatch):
    """With the sqlite default, artifacts go beside the database, not to ./mlruns of wherever the job was started;
    with log_checkpoint the last checkpoint folder is the run's `checkpoint/` artifact."""
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    tracker = tracked(run_dir, steps=1, log_checkpoint=True)
    (run_dir / "config.yaml").write_text("a: 1\n")
    tracker.log_artifact(run_dir / "config.yaml")
    for step in (1, 2):
        ckpt = run_dir / "checkpoints" / f"step{step}"
        ckpt.mkdir(parents=True)
        (ckpt / "model.pt").write_bytes(bytes([step]) * 10)
        tracker.set_tags({"last_checkpoint": ckpt})
    tracker.close()
    c, run_id = store(run_dir)
    assert {a.path for a in c.list_artifacts(run_id)} == {"config.yaml", "checkpoint"}
    assert [a.path for a in c.list_artifacts(run_id, "checkpoint")] == ["checkpoint/model.pt"]
    model = c.download_artifacts(run_id, "checkpoint/model.pt", str(tmp_path))
    assert open(model, "rb").read() == bytes([2]) * 10
    assert list((run_dir / "mlartifacts").rglob("config.yaml"))
    assert not os.path.exists(tmp_path / "mlruns")


def test_a_run_recorded_before_the_outbox_is_continued(tmp_path):
    """mlflow_run.json of older runs holds only the uri and run id: resuming such a run logs into it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri)
    run_id = c.create_run(c.create_experiment("unit")).info.run_id
    (tmp_path / "mlflow_run.json").write_text(json.dumps({"run_id": run_id, "tracking_uri": uri}))
    tracked(tmp_path, steps=2).close()
    assert [m.step for m in c.get_metric_history(run_id, "train/loss")] == [1, 2]
    assert RunRecord.load(tmp_path).run_id == run_id


def test_a_job_that_dies_of_an_exception_delivers_its_metrics_and_marks_the_run_failed(tmp_path):
    script = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from tests.test_tracking import tracked
tracked({str(tmp_path)!r}, steps=3)
raise RuntimeError("boom")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "RuntimeError: boom" in proc.stderr
    c, run_id = store(tmp_path)
    assert [m.step for m in c.get_metric_history(run_id, "train/loss")] == [1, 2, 3]
    assert c.get_run(run_id).info.status == "FAILED"


def test_sync_to_another_store_gets_the_whole_history(tmp_path, capsys):
    """vt-mlflow-sync --tracking-uri moves a run: the other store gets every step, in a run of its own."""
    from framework.tracking.sync import main as sync

    tracked(tmp_path, steps=3).close()
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert sync([str(tmp_path), "--tracking-uri", other]) == 0
    run_id = RunRecord.load(tmp_path).run_id
    assert f"to MLflow run {run_id} at {other}" in capsys.readouterr().out
    c = MlflowClient(tracking_uri=other)
    assert [m.step for m in c.get_metric_history(run_id, "train/loss")] == [1, 2, 3]
    assert c.get_run(run_id).info.status == "FINISHED"
