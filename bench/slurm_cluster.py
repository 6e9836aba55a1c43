"""How long the test SLURM cluster (tests/slurm_cluster.py) takes to start, run a 2-task step and stop.

    python -m bench.slurm_cluster [--repeats 3] [--out docs/BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.slurm_cluster import Cluster


def one_cycle() -> dict:
    with tempfile.TemporaryDirectory(prefix="vt-slurm-") as folder:
        cluster = Cluster(Path(folder))
        cluster.start()
        t0 = time.time()
        cluster.run(["srun", "-n", "2", "true"])
        srun_s = time.time() - t0
        t0 = time.time()
        cluster.stop()
        return {"start_s": cluster.startup_seconds, "srun_2_tasks_s": srun_s, "stop_s": time.time() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="write a section into this markdown file")
    a = p.parse_args(argv)
    load = os.getloadavg()[0]  # the machine may be shared: the figures mean little without it
    runs = [one_cycle() for _ in range(a.repeats)]
    figures = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
    print(json.dumps({"median": figures, "runs": runs, "repeats": a.repeats, "load_average_1min": load}))
    if a.out:
        from .report import machine, write_section

        body = (f"### Test SLURM cluster (`python -m bench.slurm_cluster --repeats {a.repeats}`)\n\n"
                f"{machine()}; munge + MariaDB + slurmdbd + slurmctld + slurmd, packages already installed; "
                f"median of {a.repeats}; 1-minute load average {load:.1f} when it started.\n\n"
                "| start | `srun -n 2 true` | stop |\n|---|---|---|\n"
                f"| {figures['start_s']:.1f} s | {figures['srun_2_tasks_s']:.1f} s | {figures['stop_s']:.1f} s |")
        write_section(a.out, "slurm_cluster", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
