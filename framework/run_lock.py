"""One job per run folder: `<run_dir>/run.lock` names the job that uses it (host, pid, SLURM job id).

Two jobs writing one folder would resume each other's checkpoints and interleave their metrics. A lock that
outlived its job (SIGKILL, a node failure) is stale and taken over, with one line saying so, when that can
be known:
- on the same host, its process is gone (or the pid now belongs to a process started later);
- it names the SLURM job we are: SLURM requeued this job (preemption, a time limit, a node failure), maybe
  onto another host, and its earlier attempt is over;
- SLURM says its job is no longer running.
A lock of another host that none of these settle is refused, with the holder and how to clear it.

Taking a lock happens under flock on a side file, so two jobs that start together cannot both take it.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .atomic import write_json

LOCK = "run.lock"
GUARD = ".run.lock.guard"


class RunLockError(RuntimeError):
    pass


def me() -> dict:
    import psutil

    return {"host": socket.gethostname(), "pid": os.getpid(), "job_id": os.environ.get("SLURM_JOB_ID"),
            "started": psutil.Process().create_time(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def read(run_dir) -> dict | None:
    try:
        holder = json.loads((Path(run_dir) / LOCK).read_text())
        return holder if isinstance(holder, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # written by a job killed mid-write: nobody holds it


def describe(h: dict) -> str:
    if not h.get("pid") or not h.get("host"):
        return "an unknown job"
    job = f", SLURM job {h['job_id']}" if h.get("job_id") else ""
    return f"pid {h.get('pid')} on {h.get('host')}{job}, since {h.get('since')}"


def alive(h: dict) -> tuple[bool | None, str]:
    """Whether the holder still runs (None: cannot be known from here), and why."""
    if not h.get("pid") or not h.get("host"):
        return False, "the lock file is empty or unreadable"
    job = os.environ.get("SLURM_JOB_ID")
    if h.get("job_id") and h["job_id"] == job:
        return False, f"it names this SLURM job ({job}): an earlier attempt, requeued"
    if h["host"] == socket.gethostname():
        return _process_alive(h)
    if h.get("job_id"):
        state = slurm_state(h["job_id"])
        if state is not None:
            return state in ACTIVE, f"SLURM says job {h['job_id']} is {state or 'gone'}"
    return None, "it is held on another host"


ACTIVE = {"RUNNING", "PENDING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "STOPPED"}


def _process_alive(h: dict) -> tuple[bool, str]:
    import psutil

    try:
        started = psutil.Process(int(h["pid"])).create_time()
    except (psutil.NoSuchProcess, ValueError):
        return False, f"process {h['pid']} is gone"
    if abs(started - float(h.get("started", started))) > 1.0:
        return False, f"pid {h['pid']} now belongs to another process"
    return True, "its process is running"


def slurm_state(job_id: str) -> str | None:
    """The job's state per squeue ('' if SLURM no longer knows it); None without SLURM."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return "" if "Invalid job id" in out.stderr else None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


def refusal(run_dir, h: dict, why: str) -> str:
    return (f"run_dir {run_dir} is in use by {describe(h)} ({why}); two jobs cannot share a run folder: wait for "
            f"it, use another run_dir, or, if that job is gone, delete {Path(run_dir) / LOCK}")


def check(run_dir) -> None:
    """Refuse if a live job holds the folder (vt-launch asks this before anything starts)."""
    h = read(run_dir)
    if h is not None and h:
        is_alive, why = alive(h)
        if is_alive is not False:
            raise RunLockError(refusal(run_dir, h, why))


@contextmanager
def _guarded(run_dir: Path):
    with open(run_dir / GUARD, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def acquire(run_dir) -> dict:
    """Take the folder for this process; returns what the lock says. Raises RunLockError if a live job has it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _guarded(run_dir):
        h = read(run_dir)
        if h is not None:
            is_alive, why = alive(h)
            if is_alive is not False:
                raise RunLockError(refusal(run_dir, h, why))
            print(f"warning: taking over the stale lock of {describe(h)} on "
                  f"{run_dir} ({why})", file=sys.stderr, flush=True)
        mine = me()
        write_json(run_dir / LOCK, mine)
    return mine


def release(run_dir, mine: dict) -> None:
    """Remove the lock if it is still ours."""
    run_dir = Path(run_dir)
    with _guarded(run_dir):
        h = read(run_dir)
        if h and h.get("pid") == mine["pid"] and h.get("host") == mine["host"]:
            (run_dir / LOCK).unlink(missing_ok=True)
