"""Clip classification end to end: a 3D backbone trained on random clips through vt-launch, tested with
temporal × spatial views, per-video predictions from vt-infer."""
import json
import subprocess
import sys

import pytest
import torch

from framework.evaluate import spatial_crops
from tests.conftest import REPO, run_training


@pytest.fixture(scope="module")
def motion_clips(tmp_path_factory):
    """12 synthetic action clips (2 classes by motion direction, 4 held out), 16 frames of 32×48 each."""
    from data_prep.jobs import Layout, discover
    from data_prep.prepare import prepare
    from data_prep.shards import ShardSpec
    from data_prep.synthetic import ActionSpec, generate_actions

    root = tmp_path_factory.mktemp("clips")
    generate_actions(root, ActionSpec(kind="motion", num_clips=12, test_clips=4, size=32), progress=False)
    jobs, problems = discover(root, Layout(clips="clips.csv"))
    spec = ShardSpec(fps=8, size=(48, 32)).stage_spec()
    assert not problems and prepare(root, jobs, spec, 1, None, progress=False).manifest is not None
    return root


def test_three_crops_lie_left_centre_right_of_the_long_side():
    frames = torch.arange(2 * 8 * 12).view(1, 2, 8, 12, 1).expand(1, 2, 8, 12, 3)
    left, centre, right = spatial_crops(frames, 3, None)
    assert left.shape == (1, 2, 8, 8, 3)
    assert left[0, 0, 0, :, 0].tolist() == list(range(8))
    assert centre[0, 0, 0, :, 0].tolist() == list(range(2, 10)) and right[0, 0, 0, :, 0].tolist() == list(range(4, 12))
    (only,) = spatial_crops(frames, 1, 6)
    assert only.shape == (1, 2, 6, 6, 3) and only[0, 0, 0, 0, 0].item() == 12 + 3  # row 1, column 3


def test_clip_task_with_a_3d_backbone_trains_tests_on_views_and_writes_per_video_predictions(motion_clips, tmp_path):
    import pandas as pd

    run_dir = tmp_path / "run"
    proc = run_training([f"data.root={motion_clips}", f"run_dir={run_dir}", "name=clip", "task=clip",
                         "data.sampling=clips", "data.batch_size=2", "data.seq_len=8", "model.backbone=r3d_18",
                         "model.head=linear", "trainer.max_steps=4", "trainer.log_every=2", "task.clip.views=3",
                         "logging.mlflow.enabled=false"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((run_dir / "eval.json").read_text())["clip"]
    assert report["videos"] == 4 and report["views"] == 3 * 3  # 3 temporal clips × 3 crops (48 wide, 32 high)
    assert 0 <= report["top1"] <= report["top5"] == 1.0  # 2 classes: the label is always among the top 5
    assert "clip: top-1" in proc.stdout and (run_dir / "eval" / "clip_confusion.png").is_file()
    out = tmp_path / "infer"
    infer = subprocess.run([sys.executable, "-m", "framework.infer", str(run_dir), "--out", str(out), "--no-mlflow"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert infer.returncode == 0, infer.stderr[-3000:]
    table = pd.read_parquet(out / "predictions.parquet")
    assert len(table) == 4 and set(table.clip_target) <= {"leftward", "rightward"}
    assert {"video", "clip_prediction", "clip_top5", "clip_prob_leftward", "clip_prob_rightward"} <= set(table.columns)
    assert ((table.clip_prob_leftward + table.clip_prob_rightward - 1).abs() < 1e-5).all()
    assert json.loads((out / "report.json").read_text()) == json.loads((run_dir / "eval.json").read_text())
