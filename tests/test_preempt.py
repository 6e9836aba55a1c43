"""framework.preempt: a signal on one rank stops every rank at the same step; launch.job bounds the requeues."""
import os
import signal

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from framework import preempt
from framework.env import free_port
from launch.job import TrainJob


@pytest.fixture(autouse=True)
def fresh():
    previous = signal.getsignal(signal.SIGUSR2)
    preempt.reset()
    yield
    preempt.reset()
    signal.signal(signal.SIGUSR2, previous)


def test_nothing_is_asked_unless_installed():
    preempt.request()
    assert not preempt.should_stop() and not preempt.stopped()


def test_a_signal_stops_at_the_next_check():
    preempt.install(signal.SIGUSR2)
    assert not preempt.should_stop()
    os.kill(os.getpid(), signal.SIGUSR2)
    assert preempt.should_stop() and preempt.stopped()


def _rank(rank: int, port: int, signalled: int, out) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    preempt.install(signal.SIGUSR2)
    seen = [preempt.should_stop()]
    if rank == signalled:
        os.kill(os.getpid(), signal.SIGUSR2)
    seen.append(preempt.should_stop())
    out.put((rank, seen))
    dist.destroy_process_group()


def test_a_signal_on_one_rank_stops_both_at_the_same_step():
    port = free_port()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, port, 1, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results == {0: [False, True], 1: [False, True]}


def test_requeues_carry_resume_auto_and_stop_at_the_bound():
    job = TrainJob(["name=x", "trainer.resume=none"], "/tmp", max_requeues=2)
    first = job.checkpoint().function
    assert first.overrides == ["name=x", "trainer.resume=auto"] and first.requeues == 1
    second = first.checkpoint().function
    assert second.requeues == 2
    assert second.checkpoint() is None
