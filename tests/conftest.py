import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("DS_ACCELERATOR", "cpu")


def pytest_configure(config):
    config.addinivalue_line("markers", "mlflow_server: starts a real `mlflow server` on 127.0.0.1 and stops it mid-run")
    config.addinivalue_line("markers", "slurm: jobs on a real single-machine SLURM cluster (tests/slurm_cluster.py)")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small synthetic workflow dataset with shards: 6 train + 2 test videos of 50–90 sampled frames, with
    phases and two instruments' presence (grasper, clipper)."""
    from data_prep.shards import ShardSpec, VideoItem, write_shards
    from data_prep.synthetic import SyntheticSpec, generate

    root = tmp_path_factory.mktemp("tiny_data")
    spec = SyntheticSpec(num_videos=8, test_videos=2, fps=10, size=32, phase_seconds=(2.0, 3.5), seed=1, tools=True)
    records = generate(root, spec, progress=False)
    items = [VideoItem(r["id"], r["video"], r["annotation"], r["split"], r["tools"]) for r in records]
    write_shards(root, items, ShardSpec(fps=5, size=32), progress=False)
    return root


@pytest.fixture(scope="session")
def tal_data(tmp_path_factory) -> Path:
    """A small synthetic TAL dataset with shards (through the --segments path): 4 train + 2 val videos of 12–18 s
    at 4 fps (48–72 frames of 32²), 2 action classes, ActivityNet segments JSON."""
    from data_prep.jobs import Layout, discover
    from data_prep.prepare import prepare
    from data_prep.shards import ShardSpec
    from data_prep.synthetic import TALSpec, generate_tal

    root = tmp_path_factory.mktemp("tal_data")
    generate_tal(root, TALSpec(num_videos=6, test_videos=2, classes=2, fps=4, size=32, video_seconds=(12, 18),
                               action_seconds=(2, 4), gap_seconds=(1, 4), seed=3), progress=False)
    jobs, problems = discover(root, Layout(segments="segments.json"))
    spec = ShardSpec(fps=4, size=32)
    result = prepare(root, jobs, spec.stage_spec(), 1, None, problems, False)
    assert result.manifest is not None and not result.problems, result.problems
    return root


def run_training(overrides: list[str], nproc: int = 2, timeout: int = 300, **popen) -> subprocess.CompletedProcess:
    """vt-launch with N real processes (torchrun, gloo, DeepSpeed)."""
    cmd = [sys.executable, "-m", "launch.local", f"--nproc={nproc}", *overrides]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, **popen)


def tiny_overrides(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [f"data.root={data}", f"run_dir={run_dir}", "name=test", "data.batch_size=2", "data.seq_len=8",
            "trainer.lr=0.0003", "trainer.warmup_steps=2", "trainer.log_every=1", *extra]


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants at once, as a node failure would. (torchrun starts its
    workers in sessions of their own, so killing the process group is not enough.)"""
    import psutil

    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for p in procs:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=30)


def kill_after_first_checkpoint(overrides: list[str], run_dir: Path, nproc: int = 2) -> str:
    """Start a training run, SIGKILL it as soon as its first checkpoint is complete; returns the tag of the
    checkpoint it left (`latest` is written last, so it names a complete one)."""
    cmd = [sys.executable, "-m", "launch.local", f"--nproc={nproc}", *overrides]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    latest = run_dir / "checkpoints" / "latest"
    deadline = time.time() + 240
    while not (latest.is_file() and latest.read_text().strip()) and time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    kill_tree(proc.pid)
    proc.wait()
    assert not (run_dir / "eval.json").exists(), "the run was killed before it finished"
    return latest.read_text().strip()


def checkpoint_states(run_dir: Path) -> dict:
    """The latest DeepSpeed checkpoint's model-states file: weights, engine counters."""
    import torch

    ckpt = run_dir / "checkpoints"
    tag = (ckpt / "latest").read_text().strip()
    return torch.load(ckpt / tag / "mp_rank_00_model_states.pt", weights_only=False)


def final_weights(run_dir: Path) -> dict:
    return checkpoint_states(run_dir)["module"]
