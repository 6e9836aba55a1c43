"""One process for the analysis directions test (tests/test_analysis_directions.py): the static/dynamic and the
fusion benchmarks on small, fast settings (their data shared), then `vt-probe bias` and `vt-probe fusion` (each a
process of its own, as users run them) on two of their runs, the first with MLflow on. Prints one JSON line.

    python -m tests.analysis_directions WORK [SEED]     # the test runs seed 0; the docs' numbers are of 0, 1, 2
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from bench import fusion, static_dynamic
from framework.entry import entry_point

# Settings under which the directions held on seeds 0 to 4 (docs/ANALYSIS.md §4): 128 training clips per task
# (with 24, the 3D model memorised each video's texture and did not learn the motion), 300 steps (seconds
# each here), the drop rates at 20× the lr (at 10× the top layer did not separate the two tasks).
COMMON = dict(clips=160, test_clips=32, frames=8, size=24, batch=8, lr=3e-3, seed=0)
STATIC = static_dynamic.Setting(
    **COMMON, steps=300, tsn_steps=15, pairs=256, backbone3d="fusion3d",
    kwargs3d={"widths": [8, 16, 32], "depths": [1, 1, 1], "architecture": ["ST", "ST", "ST"]},
    sd_p=0.5, sd_layers=(-2, -1), sd_every=50, bias_every=150)
FUSION = fusion.Setting(**COMMON, steps=300, warmup=50, retrain_steps=20, widths=(16, 16, 16), depths=(1, 1, 1),
                        length_scale=50.0, train_size=1000, rate_lr_scale=20.0, samples=8)


def probe(*args: str) -> int:
    """`vt-probe ...` as a user runs it: a process of its own (it ends the process group it starts), without
    the rendezvous variables this process's group left in the environment (its port is still taken)."""
    from framework.env import TORCHRUN_VARS

    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    return subprocess.call([sys.executable, "-m", "framework.probe", *args], cwd=Path(__file__).resolve().parents[1],
                           env=env)


@entry_point
def main(work: Path, seed: int = 0) -> None:
    out = {"static_dynamic": static_dynamic.run(work, replace(STATIC, seed=seed)),
           "fusion": fusion.run(work, replace(FUSION, seed=seed))}
    print(json.dumps({"benchmarks": out}), flush=True)
    out["bias_cli"] = probe("bias", str(work / "run-3d_motion"), "logging.mlflow.enabled=true", "--pairs", "16",
                            "--layers", "-1")
    out["fusion_cli"] = probe("fusion", str(work / "run-template-motion"), "--samples", "3", "--no-mlflow")
    print(json.dumps({"analysis_directions": out}))

if __name__ == "__main__":
    main(Path(sys.argv[1]), *map(int, sys.argv[2:]))
