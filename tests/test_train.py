"""Real training: 2 processes under torchrun, gloo, a DeepSpeed engine, FFCV shards, MLflow on sqlite."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import (REPO, checkpoint_states, final_weights, kill_after_first_checkpoint, logged_steps,
                            run_training, tiny_overrides)


@pytest.fixture(scope="module")
def trained(trained_run):
    return trained_run


def test_loss_decreases(trained):
    run_dir, _ = trained
    losses = [json.loads(line)["train/loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_run_reports_accuracy_checkpoints_and_dashboard(trained):
    run_dir, proc = trained
    assert "phase: accuracy " in proc.stdout and "(official relaxed protocol)" in proc.stdout
    assert f"checkpoints: {run_dir / 'checkpoints'}" in proc.stdout
    assert f"{Path(sys.executable).parent / 'mlflow'} ui --backend-store-uri sqlite:///{run_dir / 'mlflow.db'}" \
        in proc.stdout
    phase = json.loads((run_dir / "eval.json").read_text())["phase"]
    assert phase["videos"] == 2 and 0 <= phase["frame_pooled"]["accuracy"] <= 1
    for name in ("phase_ribbons.png", "phase_confusion.png"):
        assert (run_dir / "eval" / name).stat().st_size > 1000
    assert sorted(p.name for p in (run_dir / "eval" / "cholec80" / "pred").iterdir()) == \
        ["video006-phase.txt", "video007-phase.txt"]


def test_mlflow_holds_config_metrics_and_artifacts(trained):
    from mlflow.tracking import MlflowClient

    run_dir, _ = trained
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    run_id = json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["data.batch_size"] == "2" and run.data.params["trainer.max_steps"] == "40"
    assert run.data.params["deepspeed.zero_stage"] == "0"
    assert run.data.tags["run_dir"] == str(run_dir)
    history = client.get_metric_history(run_id, "train/loss")
    assert [m.step for m in history] == list(range(1, 41))
    assert "eval/phase/protocol_official/accuracy/mean" in run.data.metrics
    assert "train/phase/accuracy" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "eval.json", "eval"} <= artifacts


def test_resume_after_kill_is_bitwise_identical(trained, tiny_data, tmp_path):
    """Kill the job (SIGKILL to every process) after its step-10 checkpoint, resume with resume=auto:
    the weights at step 40 equal those of the uninterrupted run, bit for bit."""
    reference, _ = trained
    run_dir = tmp_path / "killed"
    overrides = tiny_overrides(tiny_data, run_dir, "trainer.max_steps=40", "trainer.checkpoint_every=10")
    killed_at = kill_after_first_checkpoint(overrides, run_dir)
    assert killed_at in ("step00000010", "step00000020", "step00000030"), killed_at

    assert max(logged_steps(run_dir)) > int(killed_at.removeprefix("step")), "steps past the checkpoint logged"
    resumed = run_training(overrides)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {run_dir / 'checkpoints' / killed_at}" in resumed.stdout
    want, got = final_weights(reference), final_weights(run_dir)
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
    # the steps the killed job logged after its checkpoint were trained again, and are logged once
    assert logged_steps(run_dir) == list(range(1, 41))


@pytest.mark.parametrize("options", [
    ["deepspeed.zero_stage=1"],
    ["deepspeed.zero_stage=2", "deepspeed.bf16=true", "deepspeed.grad_accum=2", "logging.console=false"],
])
def test_engine_options_train(tiny_data, tmp_path, options):
    """ZeRO stages, bf16 and gradient accumulation come from the config and train on 2 gloo processes; each
    checkpoint's completion marker lists every rank's files (the optimizer shards of both ranks included)."""
    run_dir = tmp_path / "run"
    proc = run_training(tiny_overrides(tiny_data, run_dir, "trainer.max_steps=6", "trainer.eval=false",
                                       "logging.mlflow.enabled=false", *options))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("train:" in proc.stderr) == ("logging.console=false" not in options)  # the progress bar
    ckpt = run_dir / "checkpoints" / "step00000006"
    listed = json.loads((ckpt / "complete.json").read_text())["files"]
    assert listed == {f.name: f.stat().st_size for f in ckpt.iterdir() if f.name != "complete.json"}
    assert {"trainer_state_rank0.pt", "trainer_state_rank1.pt"} <= listed.keys()
    assert sum("optim_states" in name for name in listed) == 2
    losses = [json.loads(line)["train/loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 6 and all(0 < x < 10 for x in losses)
    accum = 2 if "deepspeed.grad_accum=2" in options else 1
    assert checkpoint_states(run_dir)["global_steps"] == 6 // accum  # optimizer steps, not batches
    weights = final_weights(run_dir)
    if "deepspeed.bf16=true" in options:
        assert all(w.dtype == torch.bfloat16 for w in weights.values() if w.is_floating_point())


def test_vt_eval_reproduces_the_runs_own_evaluation(trained):
    """Evaluating the final checkpoint again, in one process, gives the metrics the 2-process run wrote
    (overrides and options in any order)."""
    run_dir, _ = trained
    proc = subprocess.run([sys.executable, "-m", "framework.eval", str(run_dir), "--tag", "step00000040",
                           "data.num_workers=1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout[proc.stdout.index("{\n"):])  # the report is the last thing printed
    assert printed == json.loads((run_dir / "eval.json").read_text())


def test_vt_eval_refuses_a_folder_that_is_not_a_run(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "framework.eval", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"vt-eval: error: {tmp_path} is not a run folder (no config.yaml)"
