"""One process for the analysis directions test (tests/test_analysis_directions.py): the static/dynamic and the
fusion benchmarks on small, fast settings (their data shared), then `vt-probe bias` and `vt-probe fusion` on
two of their runs, once with MLflow on. Prints one JSON line.

    python -m tests.analysis_directions WORK
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import fusion, static_dynamic

COMMON = dict(clips=24, test_clips=8, frames=8, size=24, batch=8, lr=3e-3, seed=0)
STATIC = static_dynamic.Setting(
    **COMMON, steps=80, tsn_steps=15, pairs=48, backbone3d="fusion3d",
    kwargs3d={"widths": [8, 16, 32], "depths": [1, 1, 1], "architecture": ["ST", "ST", "ST"]},
    sd_p=0.5, sd_layers=(-2, -1), sd_every=20, bias_every=40)
FUSION = fusion.Setting(**COMMON, steps=150, warmup=30, retrain_steps=20, widths=(8, 16, 32), depths=(1, 1, 1),
                        length_scale=50.0, train_size=1000, rate_lr_scale=10.0, samples=8)


def main(work: Path) -> None:
    from framework.analysis.cli import main as probe

    out = {"static_dynamic": static_dynamic.run(work, STATIC), "fusion": fusion.run(work, FUSION)}
    print(json.dumps({"benchmarks": out}), flush=True)
    out["bias_cli"] = probe("bias", [str(work / "run-3d_motion"), "logging.mlflow.enabled=true", "--pairs", "16",
                                     "--layers", "-1"])
    out["fusion_cli"] = probe("fusion", [str(work / "run-template-motion"), "--samples", "3", "--no-mlflow"])
    print(json.dumps({"analysis_directions": out}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
