"""Every path and name a user gives is checked before any rank or job starts (framework/preflight.py):
one line, exit status 2. (The vt-eval argument order and logging.console are in test_train.py, the run
folder's lock in test_run_lock.py, checkpoints in test_checkpoint_folder.py and test_resume_guard.py.)"""
import shutil

import pytest

from data_prep import cli as prep_cli
from launch import cli
from tests.conftest import tiny_overrides


@pytest.mark.parametrize("override, message", [
    ("data.root=/nonexistent", "data.root=/nonexistent: no manifest.json in /nonexistent (build shards with "
                               "`vt-prep shards`)"),
    ("data.train_split=training", "data.train_split=training: split 'training' has no videos (splits in the "
                                  "manifest: ['test', 'train'])"),
    # before, a missing eval split crashed after all the training, and the MLflow run was marked FAILED
    ("data.eval_split=validation", "data.eval_split=validation: split 'validation' has no videos (splits in the "
                                   "manifest: ['test', 'train'])"),
    ("model.pretrained=/nonexistent/weights.pt", "model.pretrained=/nonexistent/weights.pt: no such file"),
    ("model.pretrained=torchvision:ResNet18_Weights.NOPE", "model.pretrained=torchvision:ResNet18_Weights.NOPE: "
                                                           "not a torchvision weights name"),
    ("trainer.resume=/nonexistent/step00000010", "trainer.resume=/nonexistent/step00000010: no such checkpoint folder"),
    # before, an unknown experiment trained the default config
    ("experiment=nope", "In 'config': Could not find 'experiment/nope' (choose one of demo, demo_frame_only, tal)"),
])
def test_a_wrong_path_or_name_is_one_line_before_anything_starts(tiny_data, tmp_path, capsys, override, message):
    assert cli.main(["--nproc=2", *tiny_overrides(tiny_data, tmp_path / "run", override)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"config error: {message}"), err
    assert not (tmp_path / "run").exists()


def test_an_eval_split_is_not_needed_by_a_run_that_does_not_evaluate(tiny_data, tmp_path):
    from framework import preflight
    from framework.config import load_config

    cfg, _ = load_config(tiny_overrides(tiny_data, tmp_path / "run", "data.eval_split=validation",
                                        "trainer.eval=false"))
    preflight.training(cfg, 2)  # no error


def test_prep_test_ids_that_match_no_video_are_an_error(tiny_data, tmp_path, capsys):
    """Before, `--test` with a misspelt id made a test split without it (or none at all)."""
    root = tmp_path / "data"
    for folder in ("videos", "annotations"):
        shutil.copytree(tiny_data / folder, root / folder)
    assert prep_cli.main(["shards", "--root", str(root), "--test", "video006,video07", "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"vt-prep: error: --test: no video with id video07 under {root / 'videos'} (ids are file names without "
        "suffix, e.g. video000, video001, video002)"]
    assert not (root / "manifest.json").exists()
