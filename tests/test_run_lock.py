"""One job per run folder (framework/run_lock.py): a lock naming host, pid and SLURM job id; a live holder is
refused before anything starts, a stale one (its process gone, its pid reused, or this very SLURM job requeued)
is taken over with one line."""
import json
import os
import socket
import subprocess
import sys

import psutil
import pytest

from framework import run_lock
from launch import cli
from tests.conftest import tiny_overrides


def write_lock(run_dir, **holder) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / run_lock.LOCK).write_text(json.dumps({"since": "2026-01-01 00:00:00", **holder}))


@pytest.fixture
def other_job():
    """A live process on this host, as another job's rank 0 would be."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield {"host": socket.gethostname(), "pid": proc.pid, "job_id": None,
           "started": psutil.Process(proc.pid).create_time()}
    proc.kill()
    proc.wait()


@pytest.fixture(autouse=True)
def no_slurm_job(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)


def test_acquire_names_this_process_and_release_removes_it(tmp_path):
    mine = run_lock.acquire(tmp_path)
    held = json.loads((tmp_path / run_lock.LOCK).read_text())
    assert held["host"] == socket.gethostname() and held["pid"] == os.getpid() and held == mine
    run_lock.release(tmp_path, mine)
    assert not (tmp_path / run_lock.LOCK).exists()


def test_a_live_job_keeps_its_folder(tmp_path, other_job, tiny_data, capsys):
    write_lock(tmp_path, **other_job)
    with pytest.raises(run_lock.RunLockError, match=f"in use by pid {other_job['pid']} on {other_job['host']}"):
        run_lock.acquire(tmp_path)
    assert cli.main(["--nproc=2", *tiny_overrides(tiny_data, tmp_path)]) == 2  # refused before anything starts
    assert capsys.readouterr().err.splitlines() == [
        f"config error: run_dir {tmp_path} is in use by pid {other_job['pid']} on {other_job['host']}, since "
        f"2026-01-01 00:00:00 (its process is running); two jobs cannot share a run folder: wait for it, use another "
        f"run_dir, or, if that job is gone, delete {tmp_path / run_lock.LOCK}"]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("holder, why", [
    (lambda: {"host": socket.gethostname(), "pid": dead_pid()}, "process {pid} is gone"),
    (lambda: {"host": socket.gethostname(), "pid": os.getpid(), "started": 1.0}, "pid {pid} now belongs to another "
                                                                                 "process"),
    (lambda: {}, "the lock file is empty or unreadable"),
])
def test_a_stale_lock_is_taken_over_with_one_line(tmp_path, capsys, holder, why):
    h = holder()
    write_lock(tmp_path, **h)
    mine = run_lock.acquire(tmp_path)
    assert json.loads((tmp_path / run_lock.LOCK).read_text())["pid"] == mine["pid"] == os.getpid()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: taking over the stale lock of ")
    assert err[0].endswith(f"({why.format(pid=h.get('pid'))})")


def test_a_requeued_slurm_job_takes_over_its_own_lock_on_another_host(tmp_path, monkeypatch):
    write_lock(tmp_path, host="node-17", pid=1234, job_id="4242", started=1.0)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert run_lock.acquire(tmp_path)["job_id"] == "4242"


def test_a_lock_held_on_another_host_that_nothing_settles_is_refused(tmp_path):
    write_lock(tmp_path, host="node-17", pid=1234, started=1.0)
    with pytest.raises(run_lock.RunLockError, match="in use by pid 1234 on node-17, since 2026-01-01 00:00:00 "
                                                    r"\(it is held on another host\)"):
        run_lock.acquire(tmp_path)


@pytest.mark.parametrize("state, held", [("RUNNING", True), ("", False)])
def test_a_lock_of_another_host_is_settled_by_what_slurm_says_of_its_job(tmp_path, monkeypatch, state, held):
    """squeue is a stand-in script here (the real cluster belongs to test_slurm.py): RUNNING keeps the lock, a
    job SLURM no longer lists frees it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text(f"#!/bin/sh\necho '{state}'\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    run_dir = tmp_path / "run"
    write_lock(run_dir, host="node-17", pid=1234, job_id="977", started=1.0)
    if held:
        with pytest.raises(run_lock.RunLockError, match=r"SLURM job 977, since .* \(SLURM says job 977 is RUNNING\)"):
            run_lock.acquire(run_dir)
    else:
        assert run_lock.acquire(run_dir)["pid"] == os.getpid()
