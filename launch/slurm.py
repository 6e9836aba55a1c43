"""Submit training to SLURM through submitit: one task per GPU (or per CPU process), arrays for sweeps.

The job itself is launch.job.TrainJob; ranks, world size and the master address come from SLURM's
environment through framework.env, as for any other launcher.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from framework.tracking.credentials import redact

from .job import TrainJob
from .sweep import Point


@dataclass
class SlurmOptions:
    nodes: int = 1
    tasks_per_node: int = 1  # one per GPU
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time_min: int = 60 * 24
    max_requeues: int = 3
    signal_delay_s: int = 120  # time between USR2 and the kill: a step, a checkpoint write, the requeue
    sbatch: dict = field(default_factory=dict)  # any other `#SBATCH --key=value`
    setup: list = field(default_factory=list)  # shell lines before srun (module load, conda activate, ...)
    log_dir: Path | None = None


def teardown(folder: str) -> list[str]:
    """Batch-script lines after srun: on failure, launch/recover.py decides whether to requeue."""
    import shlex

    recover = f"{shlex.quote(sys.executable)} -m launch.recover {shlex.quote(folder)} $vt_status"
    return ["vt_status=$?", f"if [ $vt_status -ne 0 ]; then {recover}; exit $vt_status; fi"]


def executor_parameters(opts: SlurmOptions, job_name: str, folder: str = "%j") -> dict:
    params = dict(nodes=opts.nodes, ntasks_per_node=opts.tasks_per_node, time=opts.time_min,
                  signal_delay_s=opts.signal_delay_s, job_name=job_name, setup=list(opts.setup),
                  additional_parameters=dict(opts.sbatch),
                  # a task that dies takes the others with it: its peers would otherwise wait in a collective
                  # until the time limit (NCCL's timeout, or for ever in the CPU shared-memory all-reduce)
                  srun_args=["--kill-on-bad-exit=1"],
                  # after srun: requeue from the latest checkpoint if a task died (not if the run failed)
                  teardown=teardown(folder))
    optional = dict(cpus_per_task=opts.cpus_per_task, partition=opts.partition, account=opts.account,
                    qos=opts.qos, constraint=opts.constraint,
                    gpus_per_node=opts.gpus_per_node or None,
                    mem=f"{int(opts.mem_gb * 1024)}MB" if opts.mem_gb else None)
    params.update({k: v for k, v in optional.items() if v is not None})
    return params


def log_dir(opts: SlurmOptions, points: list[Point]) -> Path:
    """Beside the runs: `<run_dir>/slurm`, or `<common parent of the sweep's run folders>/slurm`."""
    if opts.log_dir:
        return Path(opts.log_dir).resolve()
    run_dirs = [str(p.cfg.run_path.resolve()) for p in points]
    return Path(os.path.commonpath(run_dirs)) / "slurm"


def submit(points: list[Point], opts: SlurmOptions, workdir: Path) -> list:
    """One job, or one array job for a sweep; returns submitit jobs in the order of the points."""
    import submitit

    folder = log_dir(opts, points) / "%j"
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=opts.max_requeues)
    executor.update_parameters(**executor_parameters(opts, points[0].cfg.name, str(folder)))
    jobs_of = [TrainJob(p.overrides, str(workdir), opts.max_requeues) for p in points]
    if len(jobs_of) == 1:
        return [executor.submit(jobs_of[0])]
    with executor.batch():
        jobs = [executor.submit(j) for j in jobs_of]
    return jobs


def describe(job, point: Point, opts: SlurmOptions) -> str:
    out = job.paths.stdout
    what = f"{opts.nodes} node(s) x {opts.tasks_per_node} task(s)"
    if opts.gpus_per_node:
        what += f", {opts.gpus_per_node} GPU(s) per node"
    return "\n".join([
        f"submitted SLURM job {job.job_id} ({what}) for run {point.cfg.run_path.resolve()}",
        f"  overrides: {redact(' '.join(point.overrides)) or '(none)'}",
        f"  logs:      {out} (rank 0; stderr in {job.paths.stderr.name}, other ranks beside them)",
        f"  follow:    tail -F {out}",
        f"  state:     squeue -j {job.job_id}   (after it ends: sacct -j {job.job_id})",
        f"  cancel:    scancel {job.job_id}",
    ])


def wait(jobs: list, points: list[Point]) -> int:
    """Block until every job ends; 0 if all finished, else 1 with each failure's error text."""
    failed = 0
    for job, point in zip(jobs, points):
        try:
            results = job.results()
        except Exception as e:  # submitit's FailedJobError / UncompletedJobError carry the job's own error
            failed += 1
            print(f"job {job.job_id} failed: {error_text(e)}\n  full log: {job.paths.stdout}\n"
                  f"  errors:   {job.paths.stderr}")
            continue
        step = results[0]["step"]
        print(f"job {job.job_id} finished at step {step} after {results[0]['requeues']} requeue(s): "
              f"{point.cfg.run_path.resolve()}")
    return 1 if failed else 0


def error_text(e: Exception) -> str:
    """The line a user needs: the exception raised inside the job, not submitit's framing around it."""
    lines = [ln.strip() for ln in str(e).splitlines()]
    if "Traceback (most recent call last):" in lines:  # FailedJobError: the job's traceback, framed by dashes
        trace = lines[lines.index("Traceback (most recent call last):"):]
        end = next((i for i, ln in enumerate(trace) if ln.startswith("-----")), len(trace))
        body = [ln for ln in trace[:end] if ln]
        return body[-1] if body else str(e)
    return str(e).strip()
