"""Local mode of `vt-launch`: run `vt-train` in N processes on this machine through torchrun."""
from __future__ import annotations

import os
import sys

from framework.entry import entry_point
from framework.tracking.credentials import redact


def local_env(nproc: int, environ=os.environ) -> dict:
    env = dict(environ)
    if not has_gpu():
        # N processes on a few cores: one intra-op thread each, or they fight over the cores
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        env.setdefault("DS_ACCELERATOR", "cpu")
    return env


def has_gpu(environ=os.environ) -> bool:
    """Whether this machine has a visible CUDA (or ROCm) device, without importing torch (seconds on every
    launch): the driver's device node, unless CUDA_VISIBLE_DEVICES hides every device."""
    if environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return any(os.path.exists(node) for node in ("/dev/nvidiactl", "/dev/kfd"))


def torchrun_args(nproc: int, overrides: list[str]) -> list[str]:
    return ["--standalone", f"--nproc_per_node={nproc}", "-m", "framework.train", *overrides]


def torchrun(nproc: int, overrides: list[str]) -> int:
    """torchrun's elastic agent in this process, which has imported torch to check the config already: a
    `torchrun` process of its own would import it again (seconds of CPU on every launch). The ranks are
    processes of their own, as under torchrun; their own lines say what failed."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args
    from torch.distributed.run import run as elastic_run

    try:
        elastic_run(parse_args(torchrun_args(nproc, overrides)))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        print(f"vt-launch: rank {rank} ended with exit code {failure.exitcode}", file=sys.stderr, flush=True)
        return 1  # as torchrun's own exit status
    except SignalException as e:  # Ctrl-C or a scheduler's SIGTERM: the agent has stopped the ranks
        print(f"vt-launch: stopped by {e.sigval.name}; the ranks were stopped", file=sys.stderr, flush=True)
        return 128 + int(e.sigval)
    return 0


def run(points, nproc: int) -> int:
    """The runs one after the other (a sweep on one machine); the first failure's status, else 0."""
    os.environ.update(local_env(nproc))  # the ranks inherit this process's environment
    for point in points:
        if len(points) > 1:
            print(f"== run {point.index + 1}/{len(points)}: {redact(' '.join(point.overrides))}", flush=True)
        code = torchrun(nproc, point.overrides)
        if code:
            return code
    return 0


@entry_point
def main(argv: list[str] | None = None) -> int:  # kept: `python -m launch.local` predates launch.cli
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
