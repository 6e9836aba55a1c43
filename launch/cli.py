"""`vt-launch [--cluster local|slurm] [options] [hydra overrides]`: validate a training config, then run it.

    vt-launch --nproc 2 experiment=demo                                 # 2 processes here (torchrun)
    vt-launch --cluster slurm --nodes 2 --gpus-per-node 8 --partition gpu --time 720 experiment=demo
    vt-launch --cluster slurm --nproc 2 trainer.lr=1e-3,3e-4            # a sweep: one array job element each

Overrides use Hydra's syntax; `key=a,b` sweeps (every combination, each in its own run folder).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from framework.entry import entry_point

SLURM_ONLY = ("nodes", "gpus_per_node", "cpus_per_task", "mem_gb", "partition", "account", "qos", "constraint",
              "time", "max_requeues", "signal_delay", "sbatch", "setup", "log_dir", "wait")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vt-launch", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cluster", choices=("local", "slurm"), default="local")
    p.add_argument("--nproc", type=int, default=None,
                   help="processes per node, one per GPU (default: --gpus-per-node, else 1)")
    s = p.add_argument_group("SLURM (--cluster slurm)")
    s.add_argument("--nodes", type=int, default=None)
    s.add_argument("--gpus-per-node", type=int, default=None)
    s.add_argument("--cpus-per-task", type=int, default=None)
    s.add_argument("--mem-gb", type=float, default=None, help="memory per node")
    s.add_argument("--partition", "-p", default=None)
    s.add_argument("--account", "-A", default=None)
    s.add_argument("--qos", default=None)
    s.add_argument("--constraint", "-C", default=None)
    s.add_argument("--time", type=int, default=None, help="time limit in minutes (default 1440)")
    s.add_argument("--max-requeues", type=int, default=None, help="preemptions/timeouts to survive (default 3)")
    s.add_argument("--signal-delay", type=int, default=None,
                   help="seconds between the USR2 warning and the kill (default 120)")
    s.add_argument("--sbatch", action="append", default=None, metavar="KEY[=VALUE]",
                   help="any other sbatch option, e.g. --sbatch exclusive --sbatch reservation=big")
    s.add_argument("--setup", action="append", default=None, metavar="LINE",
                   help="shell line run before the job starts, e.g. 'source ~/venv/bin/activate'")
    s.add_argument("--log-dir", type=Path, default=None, help="default: <run_dir>/slurm")
    s.add_argument("--wait", action="store_true", help="wait for the job(s) and report how they ended")
    return p


def slurm_options(a: argparse.Namespace):
    from .slurm import SlurmOptions

    gpus = a.gpus_per_node or 0
    if gpus and a.nproc and a.nproc != gpus:
        raise ValueError(f"--nproc {a.nproc} differs from --gpus-per-node {gpus}: one process per GPU")
    given = {k: v for k, v in dict(nodes=a.nodes, cpus_per_task=a.cpus_per_task, mem_gb=a.mem_gb,
                                   partition=a.partition, account=a.account, qos=a.qos, constraint=a.constraint,
                                   time_min=a.time, max_requeues=a.max_requeues, signal_delay_s=a.signal_delay,
                                   log_dir=a.log_dir).items() if v is not None}
    return SlurmOptions(tasks_per_node=a.nproc or gpus or 1, gpus_per_node=gpus, sbatch=sbatch_dict(a.sbatch or []),
                        setup=a.setup or [], **given)


def sbatch_dict(items: list[str]) -> dict:
    """`exclusive` -> {"exclusive": True}; `reservation=big` -> {"reservation": "big"}."""
    out = {}
    for item in items:
        key, sep, value = item.lstrip("-").partition("=")
        out[key.replace("-", "_")] = value if sep else True
    return out


@entry_point
def main(argv: list[str] | None = None) -> int:
    args, overrides = parser().parse_known_args(argv)
    import shutil

    from framework import preflight
    from framework.config import ConfigError

    from . import sweep

    try:  # fail in one line here, not once per process on the cluster
        points = sweep.points(overrides)
        if args.cluster == "local":
            misplaced = [f"--{k.replace('_', '-')}" for k in SLURM_ONLY if getattr(args, k) not in (None, False)]
            if misplaced:
                raise ValueError(f"{', '.join(misplaced)}: only with --cluster slurm")
            opts, world = None, args.nproc or 1
        else:
            opts = slurm_options(args)
            world = opts.nodes * opts.tasks_per_node
        for point in points:
            point.cfg.check_world(world)
        if opts is not None and shutil.which("sbatch") is None:
            raise ValueError("`sbatch` not found: run this on a SLURM login node (or use --cluster local)")
        for point in points:  # the data, the splits, the weights, the checkpoint, the run folder's lock
            preflight.training(point.cfg, world)
    except (ConfigError, ValueError) as e:
        print(f"{'config error' if isinstance(e, ConfigError) else 'vt-launch: error'}: {e}", file=sys.stderr)
        return 2
    if opts is None:
        from . import local

        return local.run(points, world)
    return submit_slurm(points, opts, args.wait)


def submit_slurm(points, opts, wait: bool) -> int:
    from . import slurm

    jobs = slurm.submit(points, opts, Path.cwd())
    for job, point in zip(jobs, points):
        print(slurm.describe(job, point, opts), flush=True)
    return slurm.wait(jobs, points) if wait else 0


if __name__ == "__main__":
    sys.exit(main())
