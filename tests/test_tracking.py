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


def test_a_torn_line_is_set_aside_and_delivery_goes_on(tmp_path):
    """A job killed mid-append leaves half a line. Before, it glued itself to the next entry and every later
    delivery failed on it (the valid entries before it in the same chunk included), so vt-mlflow-sync kept
    saying "run this again later"."""
    from framework.tracking.outbox import Outbox, open_record
    from framework.tracking.sync import main as sync

    open_record(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}", "unit", "unit")
    box = Outbox(tmp_path)
    box.append({"op": "status", "ts": 1, "status": "RUNNING"})
    for step in (1, 2):
        box.append({"op": "metrics", "ts": 1000 + step, "step": step, "values": {"train/loss": 1.0 / step}})
    with open(box.path, "ab") as f:
        f.write(b'{"op": "metrics", "ts": 1003, "st')  # the kill
    box.append({"op": "metrics", "ts": 1004, "step": 4, "values": {"train/loss": 0.25}})  # the resumed job
    assert sync([str(tmp_path)]) == 0
    c, run_id = store(tmp_path)
    assert [m.step for m in c.get_metric_history(run_id, "train/loss")] == [1, 2, 4]
    rejected = [json.loads(line) for line in (tmp_path / REJECTED).read_text().splitlines()]
    assert rejected == [{"line": '{"op": "metrics", "ts": 1003, "st\n',
                         "error": "not a complete JSON line (a torn write)"}]
    assert RunRecord.load(tmp_path).delivered == box.size()


def test_credentials_in_the_tracking_uri_are_used_but_never_stored_or_printed(tmp_path, monkeypatch, capsys):
    """https://user:token@host: the user info goes to MLflow's environment variables (which its client sends);
    the record, the outbox, what is printed and the saved config show none of it."""
    from omegaconf import OmegaConf

    from framework.tracking.credentials import ENV_PASSWORD, ENV_USER, redacted_config

    for var in (ENV_USER, ENV_PASSWORD):
        monkeypatch.setenv(var, "unset")  # restored after the test, whatever the tracker sets
    uri = "http://alice:s3cret@127.0.0.1:9"  # the discard port: nothing answers, the entries wait
    cfg = SimpleNamespace(tracking_uri=uri, experiment="unit", run_name=None, system_metrics_every_s=None,
                          log_checkpoint=False)
    tracker = MlflowTracker(tmp_path, cfg, "unit", tags={})
    tracker.log_params({"lr": 0.1})
    assert os.environ[ENV_USER] == "alice" and os.environ[ENV_PASSWORD] == "s3cret"
    assert RunRecord.load(tmp_path).tracking_uri == "http://127.0.0.1:9"
    assert tracker.ui_command in (None, "open http://127.0.0.1:9")
    tracker.close()
    raw = OmegaConf.create({"logging": {"mlflow": {"tracking_uri": uri}}})
    assert OmegaConf.to_yaml(redacted_config(raw)) == "logging:\n  mlflow:\n    tracking_uri: http://***@127.0.0.1:9\n"
    printed = capsys.readouterr()
    files = [p.read_text() for p in tmp_path.iterdir() if p.is_file() and p.suffix in (".json", ".jsonl")]
    assert all("s3cret" not in text for text in [printed.out, printed.err, *files])
    assert f"set {ENV_USER} and {ENV_PASSWORD} instead" in printed.err
