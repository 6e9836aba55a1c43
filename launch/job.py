"""The submitit callable: each SLURM task runs `vt-train` in its own process; `checkpoint()` requeues it.

Preemption / time limit, step by step:
1. SLURM sends USR2 (`--signal=USR2@<delay>`) to every task. submitit installed a handler that would call
   `checkpoint()` and requeue straight from the signal handler; we replace it with framework.preempt's, which
   only sets a flag, because the trainer may be inside a collective or a checkpoint write at that moment.
2. The trainer sees the flag at the next step boundary (all ranks agree), saves a checkpoint and returns.
3. Here, rank 0 hands over to submitit's own handler, which calls `checkpoint()` (a new TrainJob with
   `trainer.resume=auto` and one more requeue counted), pickles it and runs `scontrol requeue`; the other
   ranks wait for the requeue to end them.
4. The requeued job resumes from that checkpoint: weights, optimizer, loader position, RNG, carried states,
   and the same MLflow run (reattached through the run folder).

A task that dies (OOM kill, node fault) or hangs: its peers' next collective fails, at once when its
connections close, else after trainer.collective_timeout_s. Such a peer logs what it lost and leaves with
LOST_PEER_EXIT and no result file; srun's --kill-on-bad-exit ends the rest of the step, and the batch script's
teardown (launch/recover.py) requeues the job from its latest checkpoint, within the same requeue bound.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time

WAIT_FOR_REQUEUE_S = 300  # other ranks; rank 0's requeue ends them long before this
LOST_PEER_EXIT = 75  # EX_TEMPFAIL: this task stopped because another one is gone, not because of the run
ATTEMPT_MARK = "vt-job: attempt starts"  # on task 0's stderr, which srun's own error lines share
# how gloo says that the other end of a collective is gone (dead: closed/reset; hung: timed out); NCCL's
# watchdog aborts the process instead, which srun reports as a dead task
LOST_PEER = re.compile(r"Connection closed by peer|Connection reset by peer|Broken pipe|Timed out waiting"
                       r"|Socket Timeout|DistNetworkError|Connection refused|timed out after \d+ms while trying to connect")


def log(msg: str) -> None:
    print(f"vt-job: {msg}", flush=True)


class TrainJob:
    def __init__(self, overrides: list[str], workdir: str, max_requeues: int = 3, requeues: int = 0):
        self.overrides = list(overrides)
        self.workdir = str(workdir)
        self.max_requeues = max_requeues
        self.requeues = requeues  # how many times this job was requeued before this attempt

    def __call__(self) -> dict:
        from framework import preempt, train
        from framework.checkpoint import newest
        from framework.config import load_config

        os.chdir(self.workdir)  # relative data and run folders mean the same as where the job was submitted
        configure_threads()
        cfg, _ = load_config(self.overrides)  # a ConfigError ends the job with its one-line message
        submitit_handler = signal.getsignal(signal.SIGUSR2)
        preempt.install(signal.SIGUSR2)
        rank = os.environ.get("SLURM_PROCID", "0")
        log(f"task {rank}/{os.environ.get('SLURM_NTASKS', '1')} on {socket.gethostname()}, attempt "
            f"{self.requeues + 1} (requeues so far {self.requeues}, at most {self.max_requeues}), "
            f"run folder {cfg.run_path.resolve()}")
        if rank == "0":
            print(f"{ATTEMPT_MARK} ({self.requeues + 1})", file=sys.stderr, flush=True)
        try:
            code = train.main(self.overrides)
        except Exception as e:
            reason = lost_peer(e)
            if reason is None:
                raise
            log(f"task {rank} on {socket.gethostname()}: a collective lost its peer{peer_host(reason)}: {reason}; "
                "ending this task (the job requeues from its latest checkpoint)")
            os._exit(LOST_PEER_EXIT)  # no result file: launch/recover.py tells this apart from the run failing
        if code:
            raise RuntimeError(f"vt-train exited with status {code} (the error is in this task's log above)")
        last = newest(cfg.run_path)  # the newest complete checkpoint
        step = last.step if last else 0
        if preempt.stopped() and step < cfg.trainer.max_steps:
            log(f"stopped by a preemption/time-limit signal at step {step}; checkpoint "
                f"{last.path.resolve() if last else '(none)'} saved")
            self._requeue(submitit_handler, int(rank))
        return {"rank": int(rank), "step": step, "run_dir": str(cfg.run_path.resolve()), "requeues": self.requeues}

    def _requeue(self, submitit_handler, rank: int) -> None:
        if not callable(submitit_handler):  # not under submitit (called directly): nothing can requeue us
            raise RuntimeError("stopped by a signal outside a submitit job: resume with trainer.resume=auto")
        if rank == 0:
            submitit_handler(signal.SIGUSR2, None)  # checkpoint() -> scontrol requeue -> exit
            return  # submitit's handler returns only on non-zero ranks
        if self.requeues >= self.max_requeues:
            raise RuntimeError(f"preempted after {self.requeues} requeues (max_requeues={self.max_requeues})")
        log("waiting for rank 0 to requeue the job")
        time.sleep(WAIT_FOR_REQUEUE_S)
        raise RuntimeError(f"rank 0 did not requeue the job within {WAIT_FOR_REQUEUE_S} s")

    def checkpoint(self):
        """Called by submitit (rank 0) on preemption or time limit: the job to run after the requeue, or None."""
        import submitit

        if self.requeues >= self.max_requeues:
            log(f"not requeuing: already requeued {self.requeues} times (max_requeues={self.max_requeues}); "
                "resume by hand with the same overrides (trainer.resume=auto)")
            return None
        log(f"requeue {self.requeues + 1}/{self.max_requeues}: the job will resume from its latest checkpoint")
        overrides = [o for o in self.overrides if not o.startswith("trainer.resume=")] + ["trainer.resume=auto"]
        return submitit.helpers.DelayedSubmission(
            TrainJob(overrides, self.workdir, self.max_requeues, self.requeues + 1))


def configure_threads(environ=os.environ) -> None:
    """One intra-op thread per allocated CPU; DeepSpeed's CPU accelerator when the node has no GPU."""
    from .local import has_gpu

    environ.setdefault("OMP_NUM_THREADS", environ.get("SLURM_CPUS_PER_TASK", "1"))
    if not has_gpu():
        environ.setdefault("DS_ACCELERATOR", "cpu")


def lost_peer(e: BaseException) -> str | None:
    """What the error says about the lost peer, if `e` (or what caused it) says that a collective lost one:
    gloo's sentence, without its source location and its advice."""
    while e is not None:
        text = str(e).strip()
        if LOST_PEER.search(text):
            line = re.sub(r"^\[[^\]]*\.cc:\d+\]\s*", "", text.splitlines()[0])  # [.../pair.cc:561]
            return line.split(". ")[0].rstrip(".")
        e = e.__cause__ or e.__context__
    return None


def peer_host(reason: str) -> str:
    """` (node2, 10.0.0.2)` for a gloo message naming the peer's address, else nothing."""
    found = re.search(r"\[([0-9a-fA-F.:]+)\]:\d+", reason)
    if not found:
        return ""
    try:
        return f" ({socket.gethostbyaddr(found.group(1))[0]}, {found.group(1)})"
    except OSError:
        return f" ({found.group(1)})"
