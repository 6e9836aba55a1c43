"""vt-launch --cluster slurm on a real single-machine SLURM cluster (tests/slurm_cluster.py): submitit's
SlurmExecutor, 2 tasks under srun, gloo, a DeepSpeed engine; preemption by a job in a higher-priority partition.

Select with `-m slurm`; skipped with the reason when the cluster cannot start (not root, apt unreachable).
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, final_weights, tiny_overrides
from tests.slurm_cluster import Cluster, ClusterUnavailable

pytestmark = pytest.mark.slurm
STEPS = 40  # long enough that the preemption (a few seconds of scheduling) lands mid-run


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except ClusterUnavailable as e:
        pytest.skip(f"no SLURM cluster here: {e}")
    print(f"\nSLURM cluster up in {cluster.startup_seconds:.1f} s")
    yield cluster
    cluster.stop()


def launch(cluster: Cluster, *args: str, wait: bool = True, **popen):
    cmd = [sys.executable, "-m", "launch.cli", "--cluster", "slurm", "--nproc", "2", *(["--wait"] if wait else []),
           *args]
    return subprocess.Popen(cmd, cwd=REPO, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def job_id(output: str) -> str:
    return re.search(r"submitted SLURM job (\d+)", output).group(1)


def task_log(run_dir: Path, job: str, task: int) -> str:
    return (run_dir / "slurm" / job / f"{job}_{task}_log.out").read_text()


@pytest.fixture(scope="module")
def finished_job(slurm, tiny_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("slurm_runs") / "uninterrupted"
    proc = launch(slurm, *tiny_overrides(tiny_data, run_dir, f"trainer.max_steps={STEPS}",
                                         "trainer.checkpoint_every=1000", "trainer.eval=false"))
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]
    return run_dir, out


def test_two_task_job_trains_and_finishes(finished_job):
    run_dir, out = finished_job
    job = job_id(out)
    assert f"tail -F {run_dir / 'slurm' / job / f'{job}_0_log.out'}" in out  # the launcher says where logs are
    assert f"job {job} finished at step {STEPS} after 0 requeue(s)" in out
    assert "task 0/2" in task_log(run_dir, job, 0) and "task 1/2" in task_log(run_dir, job, 1)
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == f"step{STEPS:08d}"
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == STEPS


def test_preempted_job_requeues_resumes_and_ends_bitwise_identical(slurm, finished_job, tiny_data, tmp_path):
    """A job in the high-priority partition preempts the run mid-way: USR2, a checkpoint at the next step
    boundary (periodic checkpoints are off), requeue, resume; the final weights equal the unpreempted run's,
    and MLflow holds one run with every step once."""
    reference, _ = finished_job
    run_dir = tmp_path / "preempted"
    proc = launch(slurm, *tiny_overrides(tiny_data, run_dir, f"trainer.max_steps={STEPS}",
                                         "trainer.checkpoint_every=1000", "trainer.eval=false"))
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.time() < deadline, "the job did not start training"
        time.sleep(0.2)
    slurm.run(["sbatch", "--partition=high", "--exclusive", "--ntasks=1", "--wrap=sleep 1"])
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]
    job = job_id(out)
    log = task_log(run_dir, job, 0)
    stopped = int(re.search(r"stopped by a preemption/time-limit signal at step (\d+)", log).group(1))
    assert 3 <= stopped < STEPS
    assert "requeue 1/3: the job will resume from its latest checkpoint" in log
    assert f"resumed from {run_dir / 'checkpoints' / f'step{stopped:08d}'} at step {stopped}" in log
    assert f"job {job} finished at step {STEPS} after 1 requeue(s)" in out

    want, got = final_weights(reference), final_weights(run_dir)
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
    assert_one_mlflow_run_with_every_step(run_dir)


def assert_one_mlflow_run_with_every_step(run_dir: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    run_id = json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]
    run = client.get_run(run_id)
    assert len(client.search_runs([run.info.experiment_id])) == 1
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == list(range(1, STEPS + 1))


def test_sweep_runs_as_an_array_and_reports_each_outcome(slurm, tiny_data, tmp_path):
    """`data.root=<ok>,<missing>` is a 2-element array job: one run finishes, the other cannot find its data on
    the cluster and --wait prints that job's own error. The resource options reach SLURM."""
    missing = tmp_path / "missing"
    proc = launch(slurm, "--nproc=1", "--partition=debug", "--time=7", "--mem-gb=1", "--cpus-per-task=1",
                  "--constraint=cpu", "--sbatch", "comment=vt-test",
                  *tiny_overrides(f"{tiny_data},{missing}", tmp_path / "sweep", "trainer.max_steps=3",
                                  "trainer.eval=false"))
    out = finish(proc)
    assert proc.returncode == 1, out[-3000:]
    array = re.search(r"submitted SLURM job (\d+)_0 ", out).group(1)
    assert f"job {array}_0 finished at step 3 after 0 requeue(s): {tmp_path / 'sweep' / '0'}" in out
    assert (f"job {array}_1 failed: framework.data.manifest.ManifestError: no manifest.json in {missing} "
            "(build shards with `vt-prep shards`)") in out
    assert "full log:" in out
    job = slurm.run(["scontrol", "show", "job", f"{array}_1"])
    for field in ("Partition=debug", "TimeLimit=00:07:00", "NumTasks=1", "CPUs/Task=1", "MinMemoryNode=1G",
                  "Features=cpu", "Comment=vt-test"):
        assert field in job, (field, job)


def test_bad_config_is_refused_before_submission(slurm, tmp_path):
    proc = launch(slurm, "trainer.max_step=5", f"run_dir={tmp_path / 'run'}")
    out = finish(proc, timeout=60)
    assert proc.returncode == 2
    assert "config error: trainer.max_step" in out and "submitted" not in out
    assert not (tmp_path / "run").exists()


def task_pid(run_dir: Path, task: int) -> int | None:
    """The pid of a running task of the job whose submitit folder lies in run_dir."""
    for proc in Path("/proc").iterdir():
        try:
            if str(run_dir) in (proc / "cmdline").read_text() and \
                    f"SLURM_PROCID={task}\0" in (proc / "environ").read_text(errors="replace"):
                return int(proc.name)
        except (OSError, ValueError):
            continue
    return None


def test_a_task_that_dies_takes_its_job_down(slurm, tiny_data, tmp_path):
    """SIGKILL one task of a running 2-task job (an OOM kill, a node fault): srun's --kill-on-bad-exit ends the
    other, which would otherwise wait in the gradient all-reduce until the time limit, and --wait reports it."""
    run_dir = tmp_path / "killed"
    proc = launch(slurm, *tiny_overrides(tiny_data, run_dir, "trainer.max_steps=100000", "trainer.eval=false"))
    metrics, deadline = run_dir / "metrics.jsonl", time.time() + 120
    while not metrics.is_file() or task_pid(run_dir, 1) is None:
        assert proc.poll() is None and time.time() < deadline, "the job did not start training"
        time.sleep(0.2)
    os.kill(task_pid(run_dir, 1), signal.SIGKILL)
    try:
        out = finish(proc, timeout=90)
    finally:  # a hung job and its waiting launcher must not outlive the test
        slurm.run(["scancel", "--user=root"], check=False)
        proc.kill()
    assert proc.returncode == 1, out[-3000:]
    assert f"job {job_id(out)} failed" in out, out[-3000:]
