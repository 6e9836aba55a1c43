"""Local mode of `vt-launch`: run `vt-train` in N processes on this machine through torchrun."""
from __future__ import annotations

import os
import subprocess
import sys

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


def torchrun_command(nproc: int, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "framework.train", *overrides]


def run(points, nproc: int) -> int:
    """The runs one after the other (a sweep on one machine); the first failure's status, else 0."""
    for point in points:
        if len(points) > 1:
            print(f"== run {point.index + 1}/{len(points)}: {redact(' '.join(point.overrides))}", flush=True)
        code = subprocess.call(torchrun_command(nproc, point.overrides), env=local_env(nproc))
        if code:
            return code
    return 0


def main(argv: list[str] | None = None) -> int:  # kept: `python -m launch.local` predates launch.cli
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
