"""Each task end to end through vt-launch on synthetic data with phases and instruments, then vt-infer on
the checkpoint: per-frame predictions, Cholec80-format files, reports and plots."""
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, run_training, tiny_overrides

QUIET = ["logging.mlflow.enabled=false"]


@pytest.fixture(scope="module")
def multitask(tiny_data, tmp_path_factory):
    """Three tasks on one model (a multi-stage TCN head), 2 processes."""
    run_dir = tmp_path_factory.mktemp("tasks") / "multi"
    proc = run_training(tiny_overrides(tiny_data, run_dir, "task=[phase,tools,anticipation]", "task.tools.weight=0.5",
                                       "task.anticipation.horizon=0.1", "model.head=tcn", "model.layers=2",
                                       "model.hidden=16", "trainer.max_steps=8", *QUIET))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


def test_a_multi_task_run_logs_and_reports_every_task(multitask):
    run_dir, proc = multitask
    row = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("train/loss", "train/phase/loss", "train/phase/accuracy", "train/tools/loss", "train/tools/accuracy",
                "train/anticipation/loss", "train/anticipation/wMAE"):
        assert key in row, key
    # the total is the weighted sum of the tasks' losses (weights 1, 0.5, 1)
    parts = row["train/phase/loss"] + 0.5 * row["train/tools/loss"] + row["train/anticipation/loss"]
    assert abs(row["train/loss"] - parts) < 1e-4 * parts
    report = json.loads((run_dir / "eval.json").read_text())
    assert set(report) == {"phase", "tools", "anticipation"}
    assert set(report["tools"]["AP"]) == {"grasper", "clipper"} and "convention" in report["tools"]
    assert report["anticipation"]["horizon_minutes"] == 0.1 and "wMAE" in report["anticipation"]
    for line in ("phase: accuracy", "tools: mAP", "anticipation (h = 0.1 min): wMAE"):
        assert line in proc.stdout, line
    for name in ("phase_ribbons.png", "phase_confusion.png", "tools_presence.png", "anticipation_curves.png"):
        assert (run_dir / "eval" / name).stat().st_size > 1000, name


def test_vt_infer_writes_predictions_reports_and_cholec80_files(multitask, tmp_path):
    import pandas as pd

    run_dir, _ = multitask
    out = tmp_path / "infer"
    proc = subprocess.run([sys.executable, "-m", "framework.infer", str(run_dir), "--nproc", "2", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_parquet(out / "predictions.parquet")
    assert len(table) == json.loads((run_dir / "eval.json").read_text())["phase"]["frames"]
    assert {"video", "frame", "time", "phase_target", "phase_prediction", "tools_grasper_prob",
            "anticipation_clipper_pred_min", "anticipation_clipper_target_min"} <= set(table.columns)
    assert table.groupby("video")["frame"].apply(lambda f: (f.diff().dropna() == 1).all()).all()  # in order, whole
    assert len(pd.read_csv(out / "predictions.csv")) == len(table)
    # the same checkpoint over the same split: the numbers of the run's own evaluation
    assert json.loads((out / "report.json").read_text()) == json.loads((run_dir / "eval.json").read_text())
    pred = (out / "cholec80" / "pred" / "video006-phase.txt").read_text().splitlines()
    assert pred[0] == "Frame\tPhase" and len(pred) - 1 == (table.video == "video006").sum()
    # our own export scores with vt-score like any other method's files
    score = subprocess.run([sys.executable, "-m", "framework.score", "phase", str(out / "cholec80" / "pred"),
                            str(out / "cholec80" / "gt"), "--phases", "preparation,idle_early,dissection,idle_late,"
                            "closure", "--video-fps", "10", "--json", str(tmp_path / "s.json")],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert score.returncode == 0, score.stderr
    ours = json.loads((out / "report.json").read_text())["phase"]["protocol_official"]["accuracy"]
    assert json.loads((tmp_path / "s.json").read_text())["protocol_official"]["accuracy"] == ours


@pytest.mark.parametrize("task, headline", [("tools", "tools: mAP"), ("anticipation", "anticipation (h = 3 min)")])
def test_single_task_runs(tiny_data, tmp_path, task, headline):
    proc = run_training(tiny_overrides(tiny_data, tmp_path / "run", f"task={task}", "trainer.max_steps=4", *QUIET),
                        nproc=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert headline in proc.stdout
    assert list(json.loads((tmp_path / "run" / "eval.json").read_text())) == [task]
