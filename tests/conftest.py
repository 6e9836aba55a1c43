import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("DS_ACCELERATOR", "cpu")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small synthetic workflow dataset with shards: 6 train + 2 test videos of 50–90 sampled frames."""
    from data_prep.shards import ShardSpec, VideoItem, write_shards
    from data_prep.synthetic import SyntheticSpec, generate

    root = tmp_path_factory.mktemp("tiny_data")
    spec = SyntheticSpec(num_videos=8, test_videos=2, fps=10, size=32, phase_seconds=(2.0, 3.5), seed=1)
    records = generate(root, spec, progress=False)
    items = [VideoItem(r["id"], r["video"], r["annotation"], r["split"]) for r in records]
    write_shards(root, items, ShardSpec(fps=5, size=32), progress=False)
    return root


def run_training(overrides: list[str], nproc: int = 2, timeout: int = 300, **popen) -> subprocess.CompletedProcess:
    """vt-launch with N real processes (torchrun, gloo, DeepSpeed)."""
    cmd = [sys.executable, "-m", "launch.local", f"--nproc={nproc}", *overrides]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, **popen)


def tiny_overrides(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [f"data.root={data}", f"run_dir={run_dir}", "name=test", "data.batch_size=2", "data.seq_len=8",
            "trainer.lr=0.0003", "trainer.warmup_steps=2", "trainer.log_every=1", *extra]


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: jobs on a real single-machine SLURM cluster (tests/slurm_cluster.py)")
