"""vt-launch --cluster slurm on a real two-node SLURM cluster (tests/slurm_cluster.py: each node its own network
namespace and hostname, joined by a bridge): submitit's SlurmExecutor, tasks under srun, gloo, a DeepSpeed
engine; jobs on one node and across both; preemption by a job in a higher-priority partition; a task killed
on the second node.

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

from tests.conftest import (REPO, SP_TOLERANCE, final_weights, global_relative_difference, paused, sp_overrides,
                            tiny_overrides)
from tests.slurm_cluster import Cluster, ClusterUnavailable

pytestmark = pytest.mark.slurm
STEPS = 40  # the tests that act on a running job hold its tasks still (SIGSTOP) while they do, so it is mid-run
TIMEOUT_S = 60  # trainer.collective_timeout_s of the killed job; it bounds the rendezvous too (20 s failed at load 6)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except ClusterUnavailable as e:
        pytest.skip(f"no SLURM cluster here: {e}")
    print(f"\nSLURM cluster ({len(cluster.nodes)} nodes) up in {cluster.startup_seconds:.1f} s")
    yield cluster
    cluster.stop()


def launch(cluster: Cluster, *args: str, nodes: int = 1, wait: bool = True, **popen):
    """vt-launch: one node × 2 tasks, or `nodes` nodes × 1 task."""
    shape = ["--nproc", "2"] if nodes == 1 else ["--nodes", str(nodes), "--nproc", "1"]
    cmd = [sys.executable, "-m", "launch.cli", "--cluster", "slurm", *shape, *(["--wait"] if wait else []), *args]
    return subprocess.Popen(cmd, cwd=REPO, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def job_id(output: str) -> str:
    return re.search(r"submitted SLURM job (\d+)", output).group(1)


def task_log(run_dir: Path, job: str, task: int, stream: str = "out") -> str:
    return (run_dir / "slurm" / job / f"{job}_{task}_log.{stream}").read_text()


def dp_overrides(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return tiny_overrides(data, run_dir, f"trainer.max_steps={STEPS}", "trainer.checkpoint_every=1000",
                          "trainer.eval=false", *extra)


def assert_same_weights(reference: Path, run_dir: Path) -> None:
    want, got = final_weights(reference), final_weights(run_dir)
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name


def mlflow_run(run_dir: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    return client, client.get_run(json.loads((run_dir / "mlflow_run.json").read_text())["run_id"])


@pytest.fixture(scope="module")
def one_node_job(slurm, tiny_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("slurm_runs") / "one_node"
    out = finish(proc := launch(slurm, *dp_overrides(tiny_data, run_dir)))
    assert proc.returncode == 0, out[-3000:]
    return run_dir, out


@pytest.fixture(scope="module")
def two_node_job(slurm, tiny_data, tmp_path_factory):
    """The same job, same global batch, one task on each node."""
    run_dir = tmp_path_factory.mktemp("slurm_runs") / "two_nodes"
    t0 = time.time()
    out = finish(proc := launch(slurm, *dp_overrides(tiny_data, run_dir), nodes=2))
    assert proc.returncode == 0, out[-3000:]
    print(f"two-node DP job, {STEPS} steps: {time.time() - t0:.1f} s")
    return run_dir, out


def test_two_task_job_trains_and_finishes(one_node_job):
    run_dir, out = one_node_job
    job = job_id(out)
    assert f"tail -F {run_dir / 'slurm' / job / f'{job}_0_log.out'}" in out  # the launcher says where logs are
    assert f"job {job} finished at step {STEPS} after 0 requeue(s)" in out
    assert "task 0/2" in task_log(run_dir, job, 0) and "task 1/2" in task_log(run_dir, job, 1)
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == f"step{STEPS:08d}"
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == STEPS


def test_a_job_across_two_nodes_ends_with_the_weights_of_one_node(one_node_job, two_node_job):
    """Rank 1 on the second node reaches the master (the first host of SLURM_JOB_NODELIST) over the link;
    the gradients cross the node boundary through DeepSpeed's gloo reduction (the one-node job sums them
    through shared memory), and the weights after 40 steps are the same, bit for bit."""
    run_dir, out = two_node_job
    job = job_id(out)
    assert "(2 node(s) x 1 task(s))" in out
    assert f"job {job} finished at step {STEPS} after 0 requeue(s)" in out
    assert "task 0/2 on vtnode1" in task_log(run_dir, job, 0) and "task 1/2 on vtnode2" in task_log(run_dir, job, 1)
    assert mlflow_run(run_dir)[1].data.tags["grad_allreduce"] == "deepspeed (ranks on several machines)"
    assert mlflow_run(one_node_job[0])[1].data.tags["grad_allreduce"] == "shared memory"
    assert_same_weights(one_node_job[0], run_dir)


def wait_for_steps(proc, run_dir: Path, steps: int, timeout: float = 180) -> None:
    metrics, deadline = run_dir / "metrics.jsonl", time.time() + timeout
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= steps):
        assert proc.poll() is None and time.time() < deadline, "the job did not start training"
        time.sleep(0.2)


def test_preempted_two_node_job_requeues_resumes_and_ends_bitwise_identical(slurm, two_node_job, tiny_data, tmp_path):
    """A job in the high-priority partition preempts the two-node run mid-way: USR2 to both tasks, a checkpoint
    at the next step boundary (periodic checkpoints are off), requeue, resume on both nodes; the final weights
    equal the unpreempted run's, and MLflow holds one run with every step once."""
    run_dir = tmp_path / "preempted"
    proc = launch(slurm, *dp_overrides(tiny_data, run_dir), nodes=2)
    wait_for_steps(proc, run_dir, 3)
    tasks = [task_pid(run_dir, task) for task in (0, 1)]
    with paused(*tasks):  # held past step 3 until SLURM has scheduled the preemption and signalled both tasks
        slurm.run(["sbatch", "--partition=high", "--exclusive", "--ntasks=1", "--wrap=sleep 1"])
        deadline = time.time() + 120
        while not all(signalled(pid, signal.SIGUSR2) for pid in tasks):
            assert time.time() < deadline, "SLURM did not signal the preempted job's tasks"
            time.sleep(0.2)
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]
    job = job_id(out)
    log = task_log(run_dir, job, 0)
    stopped = int(re.search(r"stopped by a preemption/time-limit signal at step (\d+)", log).group(1))
    assert 3 <= stopped < STEPS
    assert "requeue 1/3: the job will resume from its latest checkpoint" in log
    assert f"resumed from {run_dir / 'checkpoints' / f'step{stopped:08d}'} at step {stopped}" in log
    assert f"job {job} finished at step {STEPS} after 1 requeue(s)" in out
    assert "task 1/2 on vtnode2, attempt 2" in task_log(run_dir, job, 1)
    assert_same_weights(two_node_job[0], run_dir)
    assert_one_mlflow_run_with_every_step(run_dir)


def assert_one_mlflow_run_with_every_step(run_dir: Path) -> None:
    client, run = mlflow_run(run_dir)
    assert len(client.search_runs([run.info.experiment_id])) == 1
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == list(range(1, STEPS + 1))


def task_pid(run_dir: Path, task: int) -> int | None:
    """The pid of a running task of the job whose submitit folder lies in run_dir (on whichever node): the
    python process under slurmstepd, not the srun that started it (whose command line names the folder too)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_text().split("\0")
            if Path(argv[0]).name != "srun" and "submitit.core._submit" in argv and str(run_dir) in argv[-2] and \
                    f"SLURM_PROCID={task}\0" in (proc / "environ").read_text(errors="replace"):
                return int(proc.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def signalled(pid: int, sig: int) -> bool:
    """sig waits at the stopped process pid, or pid runs again (SLURM sends SIGCONT with its signal)."""
    try:
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    except FileNotFoundError:
        return True
    pending = int(status["ShdPnd"], 16) | int(status["SigPnd"], 16)
    return bool(pending >> (sig - 1) & 1) or not status["State"].startswith("T")


def test_a_rank_killed_on_one_node_stops_the_job_which_resumes_from_its_last_checkpoint(
        slurm, two_node_job, tiny_data, tmp_path):
    """SIGKILL the task on the second node (an OOM kill, a node fault) after the job's first checkpoints. Its
    peer's next collective fails (at once: the connection closes; a hung peer would be waited for
    trainer.collective_timeout_s); the step ends, the log names the dead task, and the job requeues itself
    from its last checkpoint and ends with the uninterrupted run's weights."""
    run_dir = tmp_path / "killed"
    proc = launch(slurm, *tiny_overrides(tiny_data, run_dir, f"trainer.max_steps={STEPS}",
                                         "trainer.checkpoint_every=5", "trainer.eval=false",
                                         f"trainer.collective_timeout_s={TIMEOUT_S}"), nodes=2)
    latest = run_dir / "checkpoints" / "latest"
    deadline = time.time() + 180
    while not (latest.is_file() and latest.read_text().strip() >= "step00000010") or task_pid(run_dir, 1) is None:
        assert proc.poll() is None and time.time() < deadline, "the job did not reach its step-10 checkpoint"
        time.sleep(0.1)
    with paused(task_pid(run_dir, 0)):  # so that the run cannot end in the moment between seeing step 10 and the kill
        os.kill(task_pid(run_dir, 1), signal.SIGKILL)
        killed_at = time.time()
    job = next(p.name for p in (run_dir / "slurm").iterdir() if p.name.isdigit())  # submitit's folder: the job id
    log0 = run_dir / "slurm" / job / f"{job}_0_log.out"
    while "the job step ended abnormally" not in log0.read_text():
        assert time.time() < killed_at + TIMEOUT_S + 60, "the job did not stop"
        time.sleep(0.1)
    stop_s = time.time() - killed_at
    checkpoint = latest.read_text().strip()  # the last one written before the job stopped
    out = finish(proc)
    print(f"killed rank 1 on vtnode2: the job stopped after {stop_s:.1f} s")
    assert proc.returncode == 0, out[-3000:]
    log = task_log(run_dir, job, 0)
    assert stop_s < TIMEOUT_S  # bounded: the dead task's peer did not wait out the collective timeout
    assert "a collective lost its peer (vtnode2, " in log  # rank 0 says whom it lost
    assert "vt-job: the job step ended abnormally: vtnode2: task 1: Killed" in log  # srun's word for the dead task
    assert "requeue 1/3: the job will resume from its latest checkpoint" in log
    assert f"resumed from {run_dir / 'checkpoints' / checkpoint} at step {int(checkpoint[4:])}" in log
    assert f"job {job} finished at step {STEPS} after 1 requeue(s)" in out
    assert_same_weights(two_node_job[0], run_dir)


def test_sp2_relay_across_the_node_boundary_is_exact(slurm, sp2_run, whole_sequence_run, tiny_data, tmp_path):
    """trainer.sp=2 with one rank per node: the hidden state and its gradient cross the link every step. The
    weights equal the same SP job's on one machine bit for bit, and one process's on whole sequences within
    the rounding tolerance of tests/test_sp_train.py."""
    run_dir = tmp_path / "sp2_two_nodes"
    out = finish(proc := launch(slurm, *sp_overrides(tiny_data, run_dir, 2), nodes=2))
    assert proc.returncode == 0, out[-3000:]
    assert "task 1/2 on vtnode2" in task_log(run_dir, job_id(out), 1)
    assert_same_weights(sp2_run, run_dir)
    assert global_relative_difference(final_weights(whole_sequence_run), final_weights(run_dir)) < SP_TOLERANCE


def test_sweep_runs_as_an_array_and_reports_each_outcome(slurm, tiny_data, tmp_path):
    """`trainer.lr=<ok>,<huge>` is a 2-element array job: one run finishes, the other's loss turns non-finite
    on the cluster (a failure no check before submission can see) and --wait prints that job's own error line,
    which is final (no requeue). The resource options reach SLURM."""
    overrides = [o if o != "trainer.lr=0.003" else "trainer.lr=0.003,1e38"
                 for o in tiny_overrides(tiny_data, tmp_path / "sweep", "trainer.max_steps=3", "trainer.eval=false")]
    proc = launch(slurm, "--nproc=1", "--partition=debug", "--time=7", "--mem-gb=1", "--cpus-per-task=1",
                  "--constraint=cpu", "--sbatch", "comment=vt-test", *overrides)
    out = finish(proc)
    assert proc.returncode == 1, out[-3000:]
    array = re.search(r"submitted SLURM job (\d+)_0 ", out).group(1)
    assert f"job {array}_0 finished at step 3 after 0 requeue(s): {tmp_path / 'sweep' / '0'}" in out
    assert f"job {array}_1 failed: RuntimeError: vt-train exited with status 1" in out
    assert "full log:" in out
    assert "requeue 1/" not in task_log(tmp_path / "sweep", f"{array}_1", 0)  # a failed run is final
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
