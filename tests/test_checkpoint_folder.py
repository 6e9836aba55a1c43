"""A checkpoint is complete, or it is not used (framework/checkpoint.py): the completion marker and the
framework's own `latest`, on linked copies of a real 2-process run's checkpoint folder."""
import json

import pytest

from framework import checkpoint
from launch import cli
from tests.conftest import linked_copy, tiny_overrides


@pytest.fixture
def run_copy(trained_run, tmp_path):
    return linked_copy(trained_run[0], tmp_path / "run")


def ckpt(run_dir, step: int):
    return run_dir / "checkpoints" / f"step{step:08d}"


def cut_short(path) -> None:
    """What a kill in the middle of saving leaves: the trainer states written, DeepSpeed's file not yet."""
    (path / "complete.json").unlink(missing_ok=True)
    (path / "mp_rank_00_model_states.pt").unlink()


def test_every_checkpoint_lists_its_files_and_latest_names_the_newest(trained_run):
    run_dir, _ = trained_run
    assert (run_dir / "checkpoints" / "latest").read_text() == "step00000040"
    for step in (10, 20, 30, 40):
        marker = json.loads((ckpt(run_dir, step) / "complete.json").read_text())
        assert marker["step"] == step and marker["world_size"] == 2
        assert marker["files"] == {f.name: f.stat().st_size for f in ckpt(run_dir, step).iterdir()
                                   if f.name != "complete.json"}


def test_resume_auto_takes_the_newest_complete_checkpoint(run_copy, capsys):
    """`latest` still names step 40, whose save was cut short (before, DeepSpeed's `latest` was the truth);
    step 30's model file was truncated since."""
    cut_short(ckpt(run_copy, 40))
    assert checkpoint.resolve_resume("auto", run_copy).step == 30
    assert capsys.readouterr().err.splitlines() == [
        "warning: step00000040 is incomplete (cut short); resuming from the newest complete checkpoint, step00000030"]
    model = ckpt(run_copy, 30) / "mp_rank_00_model_states.pt"
    data = model.read_bytes()
    model.unlink()  # a linked file: replaced, not written into
    model.write_bytes(data[:1000])
    assert checkpoint.resolve_resume("auto", run_copy).step == 20
    assert [c.step for c in checkpoint.complete(run_copy / "checkpoints")] == [10, 20]


BAD = "is missing, empty or unreadable"


@pytest.mark.parametrize("content, state", [(None, BAD), (b"", BAD), (b"\xff\xfe\x00", BAD),
                                            (b"step00000099", "names 'step00000099', which does not exist")])
def test_a_bad_latest_falls_back_to_the_newest_complete_with_one_warning(run_copy, capsys, content, state):
    """Before, an empty `latest` restarted training from step 0 (and overwrote the old checkpoints)."""
    latest = run_copy / "checkpoints" / "latest"
    latest.unlink()
    if content is not None:
        latest.write_bytes(content)
    assert checkpoint.resolve_resume("auto", run_copy).step == 40
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {latest} {state}; resuming from the newest complete checkpoint, step00000040"]


def test_checkpoints_of_which_none_is_complete_are_an_error_before_any_rank_starts(run_copy, tiny_data, capsys):
    for step in (10, 20, 30, 40):
        (ckpt(run_copy, step) / "complete.json").unlink(missing_ok=True)
    assert cli.main(["--nproc=2", *tiny_overrides(tiny_data, run_copy, "trainer.max_steps=50")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"config error: {run_copy / 'checkpoints'} holds 4 checkpoint folder(s) but none is complete (each was cut "
        "short before its complete.json): start afresh with trainer.resume=none, or another run_dir"]


def test_resuming_an_incomplete_checkpoint_by_path_is_one_line(run_copy, tiny_data, capsys):
    cut_short(ckpt(run_copy, 30))
    overrides = tiny_overrides(tiny_data, run_copy, "trainer.max_steps=40", f"trainer.resume={ckpt(run_copy, 30)}")
    assert cli.main(["--nproc=2", *overrides]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"config error: trainer.resume={ckpt(run_copy, 30)}: not a complete checkpoint (no complete.json: it was "
        "cut short, or is not a checkpoint folder)"]


def test_vt_eval_of_an_incomplete_checkpoint_is_one_line(run_copy, capsys):
    """Before, a bare DeepSpeed AssertionError."""
    from framework.eval import main as vt_eval

    cut_short(ckpt(run_copy, 30))
    assert vt_eval([str(run_copy), "--tag", "step00000030"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"vt-eval: error: checkpoint {ckpt(run_copy, 30)} is not complete (no complete.json: it was cut short, or "
        "is not a checkpoint folder)"]
