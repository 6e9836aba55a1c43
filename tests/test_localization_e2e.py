"""Localization end to end through vt-launch and vt-infer: synthetic TAL videos, 2 processes as one
sequence-parallel group (handoff=gather), LoFi with a short cycle, then the head alone at full fidelity on the
frozen encoder; the report, the ActivityNet files (scored again by vt-score), the plot, the fidelity logged to
MLflow every step, and vt-infer's detections table."""
import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, checkpoint_states, run_training

TINY = ["model.levels=3", "model.snippet_len=2", "model.snippet_stride=2", "model.hidden=16",
        "data.seq_len=16", "trainer.warmup_steps=1", "trainer.log_every=1",
        "logging.mlflow.system_metrics_every_s=null"]


@pytest.fixture(scope="module")
def lofi_run(tal_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tal") / "run"
    proc = run_training([f"data.root={tal_data}", f"run_dir={run_dir}", "experiment=tal", *TINY, "trainer.sp=2",
                         "trainer.handoff=gather", "trainer.max_steps=3", "lofi.enabled=true", "lofi.cycle=short",
                         "lofi.every=1", "lofi.fidelities=[[2,1],[1,1.4142]]", "lofi.head_steps=2"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


def test_lofi_then_the_head_alone_reports_map_in_both_conventions(lofi_run):
    run_dir, proc = lofi_run
    head = run_dir / "head"
    report = json.loads((head / "eval.json").read_text())["localization"]
    assert set(report["anet"]["mAP"]) == {f"{t:.2f}" for t in [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]}
    assert set(report["thumos"]["mAP"]) == {"0.30", "0.40", "0.50", "0.60", "0.70"}
    assert report["videos"] == 2 and report["ground_truth"] == 6 and report["detections"] > 0
    assert "localization: average mAP" in proc.stdout and not (run_dir / "eval.json").exists()  # only the final head
    for name in ("localization_results.json", "localization_gt.json"):
        assert (head / "eval" / name).is_file()
    assert (head / "eval" / "localization_segments.png").stat().st_size > 1000
    # our results file scored by vt-score (ActivityNet's JSON in, the evaluator) gives the report's numbers
    score = subprocess.run([sys.executable, "-m", "framework.score", "detection", str(head / "eval" /
                            "localization_results.json"), str(head / "eval" / "localization_gt.json"), "--subset",
                            "validation", "--json", str(run_dir / "scored.json")], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
    assert score.returncode == 0, score.stderr
    scored = json.loads((run_dir / "scored.json").read_text())
    assert scored["anet"]["mAP"] == report["anet"]["mAP"] and scored["thumos"] == report["thumos"]


def test_the_final_stage_trains_a_new_head_on_the_lofi_encoder_frozen(lofi_run):
    run_dir, _ = lofi_run
    lofi, head = checkpoint_states(run_dir)["module"], checkpoint_states(run_dir / "head")["module"]
    backbone = [k for k in lofi if k.startswith("backbone.")]
    assert backbone and all(torch.equal(lofi[k], head[k]) for k in backbone)
    assert not torch.equal(lofi["head.cls_head.out.conv.weight"], head["head.cls_head.out.conv.weight"])


def test_the_fidelity_in_force_is_logged_to_mlflow_every_step(lofi_run):
    from mlflow.tracking import MlflowClient

    from framework.tracking.outbox import RunRecord

    run_dir, _ = lofi_run
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    run_id = RunRecord.load(run_dir).run_id
    temporal = [(m.step, m.value) for m in client.get_metric_history(run_id, "lofi/temporal")]
    frames = [(m.step, m.value) for m in client.get_metric_history(run_id, "lofi/frames")]
    side = [(m.step, m.value) for m in client.get_metric_history(run_id, "lofi/height")]
    # short cycle, every batch: (2, 1), (1, √2), (2, 1); a rank holds 16 frames of 32² at full fidelity
    assert sorted(temporal) == [(1, 2.0), (2, 1.0), (3, 2.0)]
    assert sorted(frames) == [(1, 8.0), (2, 16.0), (3, 8.0)] and sorted(side) == [(1, 32.0), (2, 23.0), (3, 32.0)]


def test_vt_infer_writes_one_row_per_detection_and_the_same_report(lofi_run, tmp_path):
    import pandas as pd

    run_dir, _ = lofi_run
    out = tmp_path / "infer"
    proc = subprocess.run([sys.executable, "-m", "framework.infer", str(run_dir / "head"), "--nproc", "2", "--out",
                           str(out), "--no-mlflow"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report == json.loads((run_dir / "head" / "eval.json").read_text())
    table = pd.read_parquet(out / "predictions.parquet")
    assert list(table.columns) == ["video", "localization_label", "localization_start", "localization_end",
                                   "localization_score"]
    assert len(table) == report["localization"]["detections"] and set(table.video) == {"video004", "video005"}
    assert (table.localization_end >= table.localization_start).all()
