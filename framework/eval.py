"""`vt-eval RUN_DIR [--split test] [--tag TAG] [key=value ...]`: online evaluation of a run's checkpoint over
whole videos. Options and overrides go in any order."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vt-eval", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", default=None, help="split to evaluate (default: the run's data.eval_split)")
    parser.add_argument("--tag", default=None, help="checkpoint tag (default: the newest complete one)")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.root=/other/shards")
    a = parser.parse_intermixed_args(argv)  # `RUN --tag T key=v` and `RUN key=v --tag T` alike
    from . import preflight
    from .checkpoint import checkpoint_dir, newest
    from .config import ConfigError, load_saved_config

    if not (a.run_dir / "config.yaml").is_file():
        print(f"vt-eval: error: {a.run_dir} is not a run folder (no config.yaml)", file=sys.stderr)
        return 2
    last = newest(a.run_dir)
    tag = a.tag or (last.tag if last else None)
    if tag is None:
        print(f"vt-eval: error: no complete checkpoint in {checkpoint_dir(a.run_dir)}", file=sys.stderr)
        return 2
    try:
        cfg, _ = load_saved_config(a.run_dir / "config.yaml", a.overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    split = a.split or cfg.data.eval_split
    try:  # the data and the checkpoint, before the process group starts
        preflight.evaluation(cfg, split, checkpoint_dir(a.run_dir) / tag)
    except ConfigError as e:
        print(f"vt-eval: error: {e}", file=sys.stderr)
        return 2
    metrics = evaluate_checkpoint(cfg, a.run_dir, tag, split)
    if metrics is None:
        return 2
    print(json.dumps(metrics, indent=1))
    return 0


def evaluate_checkpoint(cfg, run_dir: Path, tag: str, split: str) -> dict | None:
    from .checkpoint import CheckpointError, checkpoint_dir, load_weights, read_complete
    from .data.loader import SequenceLoader
    from .engine import build_engine
    from .env import detect, init_distributed, shutdown
    from .evaluate import evaluate
    from .models import build_model

    env = detect()
    device = init_distributed(env)
    d = cfg.data
    loader = SequenceLoader(d.root, split, env.rank, env.world_size, d.batch_size, d.seq_len, shuffle=False,
                            num_workers=d.num_workers)
    engine = build_engine(build_model(cfg.model, len(loader.manifest.labels)), cfg)
    try:
        load_weights(engine, read_complete(checkpoint_dir(run_dir) / tag))
    except CheckpointError as e:  # e.g. a file that holds more than tensors: refused, not run
        print(f"vt-eval: error: {e}", file=sys.stderr)
        shutdown()
        return None
    metrics = evaluate(engine.module, loader, device).metrics
    shutdown()
    return metrics


if __name__ == "__main__":
    sys.exit(main())
