"""Sequence-parallel training end to end: 2 gloo processes, each holding half of every sequence, against one
process holding the sequences whole (real DeepSpeed engines, real FFCV shards). The runs are session fixtures
(tests/conftest.py): tests/test_slurm.py compares the same job across two nodes with them."""
import torch

from tests.conftest import (SP_TOLERANCE, final_weights, global_relative_difference, kill_after_first_checkpoint,
                            run_training, sp_overrides, tiny_overrides)


def test_sp2_reaches_the_weights_of_one_process_on_whole_sequences(sp2_run, whole_sequence_run):
    """SP=2 × 4 frames per rank, exact handoff == 1 process × 8 frames, after 4 optimizer steps."""
    want, got = final_weights(whole_sequence_run), final_weights(sp2_run)
    assert want.keys() == got.keys()
    assert not all(torch.equal(want[k], got[k]) for k in want), "suspicious: bitwise equal across layouts"
    assert global_relative_difference(want, got) < SP_TOLERANCE


def test_sp2_resumes_after_kill_bitwise(sp2_run, tiny_data, tmp_path):
    """Killed after its step-2 checkpoint (the carried state lives on the group's first rank), resumed with
    resume=auto: the same weights as the uninterrupted SP run, bit for bit."""
    run_dir = tmp_path / "killed"
    overrides = sp_overrides(tiny_data, run_dir, 2)
    assert kill_after_first_checkpoint(overrides, run_dir) == "step00000002"
    resumed = run_training(overrides)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    want, got = final_weights(sp2_run), final_weights(run_dir)
    for name in want:
        assert torch.equal(want[name], got[name]), name


def test_sp_must_divide_the_number_of_processes(tiny_data, tmp_path):
    proc = run_training(tiny_overrides(tiny_data, tmp_path / "run", "trainer.sp=3"), nproc=2)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "config error: trainer.sp=3 must divide the number of processes (2)"
