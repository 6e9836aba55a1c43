"""Stop at a step boundary when the scheduler says the job must go (SLURM preemption or time limit).

The signal handler only sets a flag: saving a DeepSpeed checkpoint from inside a handler could interrupt a
collective half-way and deadlock or corrupt the save. The trainer asks `should_stop()` after each step; the
ranks agree through one all-reduce (MAX) of a 1-element CPU tensor, because the signal may reach only some of
them, and a rank that saved and left alone would hang the others in their next collective. Then every rank
saves the checkpoint together and returns; the launcher requeues (see launch/job.py).

Nothing is asked of the ranks unless `install()` was called in every process (launch/job.py does it for SLURM
jobs); torchrun runs never pay for the all-reduce.
"""
from __future__ import annotations

import signal

_installed = False
_requested = False
_stopped = False
_group = None


def install(signum: int = signal.SIGUSR2):
    """Handle `signum` by requesting a stop; returns the handler it replaces."""
    global _installed
    previous = signal.signal(signum, _request)
    _installed = True
    return previous


def _request(signum, frame) -> None:
    global _requested
    _requested = True


def request() -> None:
    """Ask for a stop as the signal would (for code that learns about preemption some other way)."""
    _request(None, None)


def should_stop() -> bool:
    """True on every rank once any rank was signalled. A collective when installed: all ranks call it together."""
    global _stopped
    if not _installed or _stopped:
        return _stopped
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1.0 if _requested else 0.0])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=_cpu_group())
    _stopped = bool(flag.item())
    return _stopped


def stopped() -> bool:
    """Whether the ranks agreed to stop (the training loop was left early or at its last step)."""
    return _stopped


def _cpu_group():
    """A gloo group for the flag: with NCCL the default group would need a GPU tensor and a device sync per step."""
    global _group
    import torch.distributed as dist

    if dist.get_backend() == "gloo":
        return None
    if _group is None:
        _group = dist.new_group(backend="gloo")
    return _group


def reset() -> None:
    """Forget everything (a new run in the same process, tests)."""
    global _installed, _requested, _stopped
    _installed = _requested = _stopped = False
