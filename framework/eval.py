"""`vt-eval RUN_DIR [--split test] [--tag TAG] [key=value ...]`: online evaluation of a run's checkpoint over
whole videos; prints the tasks' report as JSON. Options and overrides go in any order. `vt-infer` runs the same
pass and also writes per-frame predictions, plots and exports."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .entry import entry_point


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vt-eval", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", default=None, help="split to evaluate (default: the run's data.eval_split)")
    parser.add_argument("--tag", default=None, help="checkpoint tag, or best / latest (default: the newest "
                                                    "complete one)")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.root=/other/shards")
    a = parser.parse_intermixed_args(argv)  # `RUN --tag T key=v` and `RUN key=v --tag T` alike
    from .infer import UsageError, resolve

    try:
        cfg, tag, split = resolve(a.run_dir, a.tag, a.overrides, a.split)
    except UsageError as e:
        print(f"{e.kind}: {e}", file=sys.stderr)
        return 2
    report = evaluate_checkpoint(cfg, a.run_dir, tag, split)
    if report is None:
        return 2
    from .reports import plain

    if report:  # rank 0's; the other ranks print nothing
        print(json.dumps(plain(report), indent=1))
    return 0


def evaluate_checkpoint(cfg, run_dir: Path, tag: str, split: str) -> dict | None:
    """The report on rank 0 ({} on the others); None if the checkpoint cannot be loaded (said in one line)."""
    from .checkpoint import CheckpointError
    from .env import shutdown
    from .infer import run

    try:
        env, _, _, report = run(cfg, run_dir, tag, split, progress=False)
    except CheckpointError as e:  # e.g. a file that holds more than tensors: refused, not run
        print(f"vt-eval: error: {e}", file=sys.stderr)
        shutdown()
        return None
    shutdown()
    return report if env.is_main else {}


if __name__ == "__main__":
    sys.exit(main())
