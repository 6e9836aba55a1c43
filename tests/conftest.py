import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("DS_ACCELERATOR", "cpu")

# `make test` runs the files on 2 pytest-xdist workers (--dist loadfile: a file's module fixtures stay in one
# worker). A worker takes the next file when it is free, in collection order, so the longest files go first
# (measured with --durations): the SLURM file mostly waits on its cluster, and nothing long is left to run alone
# at the end. Files not named keep their order after these.
LONGEST_FIRST = ["test_slurm.py", "test_mlflow_server.py", "test_train.py", "test_bn_cheating.py", "test_relay.py",
                 "test_tasks_e2e.py", "test_analysis_directions.py", "test_sp_train.py", "test_localization_e2e.py",
                 "test_clip_task.py", "test_best_checkpoint.py", "test_resume_guard.py", "test_checkpoint_folder.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


def once_per_run(tmp_path_factory, name: str, build):
    """build(folder) -> JSON value, run once per test run even across pytest-xdist workers: the first worker to
    need it builds it under a file lock in the run's common temporary folder; the others wait and reuse it."""
    import json

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    done = root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            folder = root / name
            folder.mkdir(exist_ok=True)
            done.write_text(json.dumps(build(folder)))
        return json.loads(done.read_text())


def pytest_configure(config):
    # FFCV's numba code from the on-disk cache, in this process and every one a test starts (seconds each).
    # Correctness never depends on it: tests/test_jit_cache.py starts from an empty cache of its own.
    from framework.data import jit_cache

    jit_cache.configure()
    config.addinivalue_line("markers", "mlflow_server: starts a real `mlflow server` on 127.0.0.1 and stops it mid-run")
    config.addinivalue_line("markers", "slurm: jobs on a real single-machine SLURM cluster (tests/slurm_cluster.py)")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small synthetic workflow dataset with shards: 6 train + 2 test videos of 50–90 sampled frames, with
    phases and two instruments' presence (grasper, clipper)."""
    from data_prep.shards import ShardSpec, VideoItem, write_shards
    from data_prep.synthetic import SyntheticSpec, generate

    def build(root: Path) -> str:
        spec = SyntheticSpec(num_videos=8, test_videos=2, fps=10, size=32, phase_seconds=(2.0, 3.5), seed=1,
                             tools=True)
        records = generate(root, spec, progress=False)
        items = [VideoItem(r["id"], r["video"], r["annotation"], r["split"], r["tools"]) for r in records]
        write_shards(root, items, ShardSpec(fps=5, size=32), progress=False)
        return str(root)

    return Path(once_per_run(tmp_path_factory, "tiny_data", build))


@pytest.fixture(scope="session")
def trained_run(tiny_data, tmp_path_factory):
    """One finished 2-process run (40 steps, checkpoints every 10), shared by the tests that read it or resume
    a linked copy of it."""
    def build(folder: Path) -> dict:
        run_dir = folder / "uninterrupted"
        proc = run_training(tiny_overrides(tiny_data, run_dir, "trainer.max_steps=40", "trainer.checkpoint_every=10"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        return {"run_dir": str(run_dir), "args": proc.args, "stdout": proc.stdout, "stderr": proc.stderr}

    r = once_per_run(tmp_path_factory, "trained_run", build)
    return Path(r["run_dir"]), subprocess.CompletedProcess(r["args"], 0, r["stdout"], r["stderr"])


@pytest.fixture(scope="session")
def robust_check(tiny_data, tmp_path_factory) -> dict:
    """tests/robust_check.py's findings (non-finite steps on real engines, safe loading, a NaN run), run once."""
    import json

    def build(work: Path) -> dict:
        env = dict(os.environ, OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu", PYTHONPATH=str(REPO))
        proc = subprocess.run([sys.executable, "tests/robust_check.py", str(tiny_data), str(work)], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1]) | {"work": str(work)}

    return once_per_run(tmp_path_factory, "robust_check", build)


def linked_copy(run_dir: Path, dest: Path) -> Path:
    """A copy of a run folder whose files are hard links (no bytes copied): a test may delete or replace any
    file in it, but must not write into one."""
    import shutil

    shutil.copytree(run_dir, dest, copy_function=os.link)
    return dest


@pytest.fixture(scope="session")
def engine_check(tiny_data, tmp_path_factory) -> list[dict]:
    """The rows tests/engine_check.py prints (one process, real Trainers): one-pass step, DeepSpeed passthrough."""
    import json

    def build(work: Path) -> list:
        env = dict(os.environ, OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu", PYTHONPATH=str(REPO))
        proc = subprocess.run([sys.executable, "-m", "tests.engine_check", str(tiny_data), str(work)], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]

    return once_per_run(tmp_path_factory, "engine_check", build)


@pytest.fixture(scope="session")
def tal_data(tmp_path_factory) -> Path:
    """A small synthetic TAL dataset with shards (through the --segments path): 4 train + 2 val videos of 12–18 s
    at 4 fps (48–72 frames of 32²), 2 action classes, ActivityNet segments JSON."""
    from data_prep.jobs import Layout, discover
    from data_prep.prepare import prepare
    from data_prep.shards import ShardSpec
    from data_prep.synthetic import TALSpec, generate_tal

    def build(root: Path) -> str:
        generate_tal(root, TALSpec(num_videos=6, test_videos=2, classes=2, fps=4, size=32, video_seconds=(12, 18),
                                   action_seconds=(2, 4), gap_seconds=(1, 4), seed=3), progress=False)
        jobs, problems = discover(root, Layout(segments="segments.json"))
        spec = ShardSpec(fps=4, size=32)
        result = prepare(root, jobs, spec.stage_spec(), 1, None, problems, False)
        assert result.manifest is not None and not result.problems, result.problems
        return str(root)

    return Path(once_per_run(tmp_path_factory, "tal_data", build))


def run_training(overrides: list[str], nproc: int = 2, timeout: int = 300, **popen) -> subprocess.CompletedProcess:
    """vt-launch with N real processes (torchrun, gloo, DeepSpeed)."""
    cmd = [sys.executable, "-m", "launch.local", f"--nproc={nproc}", *overrides]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, **popen)


# The training machinery's tests (resume, checkpoints, tracking, launchers) run timm's test_efficientnet_gn
# (GroupNorm, 40 steps of tiny_data in 3 s on 2 ranks here, 100 % held-out accuracy): ResNet-18 took 14 s and
# checkpoints 15× the size, for the same code paths. (timm's test_resnet, BatchNorm turned into GroupNorm of
# one channel per group, did not learn the phases in 40 steps.) The backbones' own tests build the real ones.
# The MLflow outage test, which needs its job to keep training while a server stops and delivery resumes, keeps
# ResNet-18's pace; the SLURM tests hold their jobs still (SIGSTOP, `paused`) while they preempt or kill a task.
TINY_BACKBONE = "timm:test_efficientnet_gn"
PACED = "model.backbone=resnet18"


def tiny_overrides(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [f"data.root={data}", f"run_dir={run_dir}", "name=test", f"model.backbone={TINY_BACKBONE}",
            "data.batch_size=2", "data.seq_len=8",
            "trainer.lr=0.003", "trainer.warmup_steps=2", "trainer.log_every=1", *extra]


# sequence parallelism runs compared across layouts (tests/test_sp_train.py, tests/test_slurm.py). SGD: its update
# is linear in the gradient, so the runs differ only by float rounding. (AdamW's update is the gradient's sign
# for near-zero gradients, which turns rounding into lr-sized differences on a few biases.)
SP_STEPS = ["trainer.max_steps=4", "trainer.checkpoint_every=2", "trainer.optimizer=sgd", "trainer.lr=0.01",
            "trainer.eval=false", "logging.mlflow.enabled=false", "model.head=gru"]


# each step's gradients agree to ≈5e-7 (tests/test_relay.py); the rounding then grows with every optimizer
# step, so the runs are compared after a few steps, with room for that growth
SP_TOLERANCE = 1e-6


def sp_overrides(data: Path, run_dir: Path, sp: int) -> list[str]:
    """SP=sp ranks × 8/sp frames each: the same sequences whatever sp (sp=1: one process holds them whole)."""
    return tiny_overrides(data, run_dir, f"data.seq_len={8 // sp}", f"trainer.sp={sp}", *SP_STEPS)


@pytest.fixture(scope="session")
def sp2_run(tiny_data, tmp_path_factory) -> Path:
    """2 local processes, SP=2, exact handoff, 4 steps."""
    return Path(once_per_run(tmp_path_factory, "sp2_run",
                             lambda folder: finished(sp_overrides(tiny_data, folder, 2))))


@pytest.fixture(scope="session")
def whole_sequence_run(tiny_data, tmp_path_factory) -> Path:
    """One process holding the sequences of sp2_run whole (8 frames)."""
    return Path(once_per_run(tmp_path_factory, "whole_sequence_run",
                             lambda folder: finished(sp_overrides(tiny_data, folder, 1), nproc=1)))


def finished(overrides: list[str], nproc: int = 2) -> str:
    """The run folder of a run that must succeed."""
    proc = run_training(overrides, nproc=nproc)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return next(o.split("=", 1)[1] for o in overrides if o.startswith("run_dir="))


def global_relative_difference(a: dict, b: dict) -> float:
    import torch

    fa = torch.cat([v.float().flatten() for v in a.values()])
    fb = torch.cat([b[k].float().flatten() for k in a])
    return ((fa - fb).norm() / fa.norm()).item()


def process_tree(pid: int) -> list:
    """A process and all its descendants (psutil). torchrun starts its workers in sessions of their own, so
    signalling the process group would not reach them."""
    import psutil

    return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants at once, as a node failure would."""
    import psutil

    procs = process_tree(pid)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=30)


@contextmanager
def paused(*pids: int):
    """SIGSTOP processes and all their descendants, SIGCONT them on leaving: a job held still while a test acts
    on it (a preemption, a server restart), so that a fast model cannot finish first."""
    import psutil

    procs = [q for pid in pids for q in process_tree(pid)]
    for q in procs:
        q.suspend()
    try:
        yield
    finally:
        for q in procs:
            try:
                q.resume()
            except psutil.NoSuchProcess:
                pass


def logged_steps(run_dir: Path) -> list[int]:
    import json

    path = run_dir / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.is_file() else []


def kill_after_first_checkpoint(overrides: list[str], run_dir: Path, nproc: int = 2) -> str:
    """Start a training run, SIGKILL it once its first checkpoint is complete and a step after it is logged;
    returns the tag of the checkpoint it left (`latest` is written after the checkpoint is complete)."""
    cmd = [sys.executable, "-m", "launch.local", f"--nproc={nproc}", *overrides]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    latest = run_dir / "checkpoints" / "latest"

    def step_past_checkpoint() -> bool:
        tag = latest.read_text().strip() if latest.is_file() else ""
        return bool(tag) and max(logged_steps(run_dir), default=0) > int(tag.removeprefix("step"))

    deadline = time.time() + 240
    while not step_past_checkpoint() and time.time() < deadline:
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
