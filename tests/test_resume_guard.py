"""Resume refuses a changed run (framework/resume_guard.py, framework/fingerprint.py), before any rank
starts, leaving the run folder as it was; trainer.resume=force restores what fits and says what it did."""
import json

import pytest
import torch

from launch import cli
from tests.conftest import linked_copy, logged_steps, run_training, tiny_overrides

FINISHED = ["trainer.max_steps=40", "trainer.checkpoint_every=10"]  # the settings of the trained_run fixture


@pytest.fixture
def run_copy(trained_run, tmp_path):
    return linked_copy(trained_run[0], tmp_path / "run")


@pytest.mark.parametrize("nproc, change, listed", [
    (2, ["trainer.lr=0.001"], "trainer.lr 0.003 -> 0.001"),  # the restored optimizer would override it
    (2, ["data.batch_size=4", "model.head=gru"], "data.batch_size 2 -> 4, model.head 'lstm' -> 'gru'"),
    (1, [], "world_size 2 -> 1"),  # the loader positions and carried states belong to a 2-process plan
])
def test_a_changed_run_is_refused_in_one_line_and_left_as_it_was(run_copy, tiny_data, capsys, nproc, change,
                                                                   listed):
    before = {name: (run_copy / name).read_bytes() for name in ("config.yaml", "metrics.jsonl")}
    assert cli.main([f"--nproc={nproc}", *tiny_overrides(tiny_data, run_copy, *FINISHED, *change)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"config error: {run_copy / 'checkpoints' / 'step00000040'} was made with other settings: {listed}; "
        "resuming would not apply them (or break the run): use another run_dir, or resume anyway with "
        "trainer.resume=force"]
    assert {name: (run_copy / name).read_bytes() for name in before} == before


def test_force_restores_what_fits_says_so_and_applies_the_new_settings(run_copy, tiny_data):
    """One process instead of two, another batch size and learning rate, one more step."""
    from framework.engine import warmup_cosine

    proc = run_training(tiny_overrides(tiny_data, run_copy, "trainer.max_steps=41", "trainer.checkpoint_every=10",
                                       "trainer.resume=force", "trainer.lr=0.001", "data.batch_size=1",
                                       "trainer.eval=false", "logging.mlflow.enabled=false"), nproc=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (f"resumed from {run_copy / 'checkpoints' / 'step00000040'} at step 40 with trainer.resume=force, "
            "despite: data.batch_size 2 -> 1, trainer.lr 0.003 -> 0.001, world_size 2 -> 1; restored: the weights "
            "and the step count, the optimizer state; not restored: the LR schedule state (the new schedule, at "
            "optimizer step 40), the loader positions and carried states (from the start of an epoch), the RNG "
            "states (as seeded)") in proc.stdout
    assert logged_steps(run_copy) == list(range(1, 42))
    rows = [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    schedule = warmup_cosine(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.001), 2, 41)
    for _ in range(41):
        schedule.step()
    assert rows[-1]["train/lr"] == pytest.approx(schedule.get_last_lr()[0], rel=1e-12)  # the new rate took effect
    assert rows[-1]["train/loss"] < 0.8 * rows[0]["train/loss"], "the trained weights were restored"
    config = (run_copy / "config.yaml").read_text()
    assert "lr: 0.001" in config and "batch_size: 1" in config  # what took effect
