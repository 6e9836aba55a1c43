"""`vt-eval RUN_DIR [--split test] [--tag TAG] [overrides]`: online evaluation of a run's checkpoint over whole
videos; prints the tasks' report as JSON. `vt-infer` runs the same streaming pass and also writes per-frame
predictions, plots and exports."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vt-eval", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", default=None, help="split to evaluate (default: the run's data.eval_split)")
    parser.add_argument("--tag", default=None, help="checkpoint tag (default: the latest)")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.root=/other/shards")
    a = parser.parse_args(argv)
    from .config import ConfigError
    from .infer import resolve

    try:
        cfg, tag = resolve(a.run_dir, a.tag, a.overrides)
    except (ConfigError, ValueError) as e:
        print(f"{'config error' if isinstance(e, ConfigError) else 'vt-eval: error'}: {e}", file=sys.stderr)
        return 2
    report = evaluate_checkpoint(cfg, a.run_dir, tag, a.split or cfg.data.eval_split)
    if report is not None:
        from .reports import plain

        print(json.dumps(plain(report), indent=1))
    return 0


def evaluate_checkpoint(cfg, run_dir: Path, tag: str, split: str) -> dict | None:
    """The report on rank 0 (None on the others)."""
    from .env import shutdown
    from .infer import run

    env, _, _, report = run(cfg, run_dir, tag, split, progress=False)
    shutdown()
    return report if env.is_main else None


if __name__ == "__main__":
    sys.exit(main())
