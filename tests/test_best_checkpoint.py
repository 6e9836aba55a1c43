"""Validation during training, the `best` checkpoint and retention, across a kill and a resume."""
import json

from tests.conftest import checkpoint_states, kill_after_first_checkpoint, run_training, tiny_overrides


def test_best_and_retained_checkpoints_survive_a_kill_and_the_best_so_far_is_kept(tiny_data, tmp_path):
    """Validation every 4 steps; best_mode=min on a number every validation gives the same (the frames of the
    split): only the first validation is an improvement, so `best` must name step 4 to the end. A resumed run
    that lost its best-so-far would call its first validation after the resume a new best. keep_last=1 keeps
    the newest checkpoint and the best one, nothing else."""
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(tiny_data, run_dir, "trainer.max_steps=16", "trainer.checkpoint_every=4",
                               "trainer.eval_every=4", "data.val_split=test", "trainer.best_metric=phase/frames",
                               "trainer.best_mode=min", "trainer.keep_last=1", "trainer.eval=false",
                               "logging.mlflow.enabled=false")
    assert kill_after_first_checkpoint(overrides, run_dir, nproc=1) == "step00000004"
    proc = run_training(overrides, nproc=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = run_dir / "checkpoints"
    assert (ckpt / "best").read_text() == "step00000004" and (ckpt / "latest").read_text() == "step00000016"
    assert sorted(p.name for p in ckpt.iterdir() if p.is_dir()) == ["step00000004", "step00000016"]
    assert proc.stdout.count("best phase/frames so far") == 0  # no new best after the resume
    rows = [json.loads(line) for line in (run_dir / "val.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8, 12, 16]  # each validation once, the one before the kill kept
    assert len({r["val/phase/frames"] for r in rows}) == 1 and "val/phase/protocol_official/accuracy/mean" in rows[0]
    import torch

    state = torch.load(ckpt / "step00000016" / "trainer_state_rank0.pt", weights_only=True)
    assert state["validation"] == {"best": rows[0]["val/phase/frames"], "best_step": 4}
    assert checkpoint_states(run_dir)["global_steps"] == 16
