"""Sequence-parallel training end to end: 2 gloo processes, each holding half of every sequence, against one
process holding the sequences whole (real DeepSpeed engines, real FFCV shards)."""
import pytest
import torch

from tests.conftest import final_weights, kill_after_first_checkpoint, run_training, tiny_overrides

# SGD: its update is linear in the gradient, so the runs differ only by float rounding. (AdamW's update is the
# gradient's sign for near-zero gradients, which turns rounding into lr-sized differences on a few biases.)
STEPS = ["trainer.max_steps=4", "trainer.checkpoint_every=2", "trainer.optimizer=sgd", "trainer.lr=0.01",
         "trainer.eval=false", "logging.mlflow.enabled=false", "model.head=gru"]
# each step's gradients agree to ≈5e-7 (tests/test_relay.py); the rounding then grows with every optimizer
# step, so the runs are compared after a few steps, with room for that growth
TOLERANCE = 1e-6


def global_relative_difference(a: dict, b: dict) -> float:
    fa = torch.cat([v.float().flatten() for v in a.values()])
    fb = torch.cat([b[k].float().flatten() for k in a])
    return ((fa - fb).norm() / fa.norm()).item()


@pytest.fixture(scope="module")
def sp_run(tiny_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sp") / "sp2"
    proc = run_training(tiny_overrides(tiny_data, run_dir, "data.seq_len=4", "trainer.sp=2", *STEPS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_sp2_reaches_the_weights_of_one_process_on_whole_sequences(sp_run, tiny_data, tmp_path):
    """SP=2 × 4 frames per rank, exact handoff == 1 process × 8 frames, after 4 optimizer steps."""
    single = tmp_path / "single"
    proc = run_training(tiny_overrides(tiny_data, single, "data.seq_len=8", *STEPS), nproc=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want, got = final_weights(single), final_weights(sp_run)
    assert want.keys() == got.keys()
    assert not all(torch.equal(want[k], got[k]) for k in want), "suspicious: bitwise equal across layouts"
    assert global_relative_difference(want, got) < TOLERANCE


def test_sp2_resumes_after_kill_bitwise(sp_run, tiny_data, tmp_path):
    """Killed after its step-2 checkpoint (the carried state lives on the group's first rank), resumed with
    resume=auto: the same weights as the uninterrupted SP run, bit for bit."""
    run_dir = tmp_path / "killed"
    overrides = tiny_overrides(tiny_data, run_dir, "data.seq_len=4", "trainer.sp=2", *STEPS)
    assert kill_after_first_checkpoint(overrides, run_dir) == "step00000002"
    resumed = run_training(overrides)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    want, got = final_weights(sp_run), final_weights(run_dir)
    for name in want:
        assert torch.equal(want[name], got[name]), name


def test_sp_must_divide_the_number_of_processes(tiny_data, tmp_path):
    proc = run_training(tiny_overrides(tiny_data, tmp_path / "run", "trainer.sp=3"), nproc=2)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "config error: trainer.sp=3 must divide the number of processes (2)"
