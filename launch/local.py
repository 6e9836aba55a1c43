"""`vt-launch --nproc N [hydra overrides]`: run `vt-train` in N local processes through torchrun."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys


def local_env(nproc: int, environ=os.environ) -> dict:
    env = dict(environ)
    if not _has_gpu():
        # N processes on a few cores: one intra-op thread each, or they fight over the cores
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        env.setdefault("DS_ACCELERATOR", "cpu")
    return env


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def torchrun_command(nproc: int, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "framework.train", *overrides]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vt-launch", description=__doc__)
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine (one per GPU)")
    args, overrides = parser.parse_known_args(argv)
    from framework.config import ConfigError, load_config

    try:  # fail in one line here rather than N times in the workers
        cfg, _ = load_config(overrides)
        cfg.check_world(args.nproc)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    return subprocess.call(torchrun_command(args.nproc, overrides), env=local_env(args.nproc))


if __name__ == "__main__":
    sys.exit(main())
