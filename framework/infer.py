"""`vt-infer RUN_DIR [--split S] [--tag T] [--out DIR] [--nproc N] [overrides]`: streaming inference of a
run's checkpoint over any prepared split, labelled or not.

Online, as the model would run in an operating room: frames in order, the state carried, no future frame.
With --nproc N (or under torchrun / vt-launch) the ranks split the videos. Writes to --out (default
RUN_DIR/infer/<split>-<tag>): predictions.parquet and predictions.csv (video, frame, time, then each task's
targets, predictions and probabilities or regressions), report.json (the tasks' metrics, each labelled with
its convention; an unlabeled split says so instead), the tasks' plots and exports (Cholec80-format phase
files in cholec80/), and logs them to the run's MLflow run when the run logged to MLflow.

    vt-infer runs/demo                                   # the latest checkpoint on the run's eval split
    vt-infer runs/demo --split val --tag step00000200 --nproc 2
    vt-infer runs/demo --split test data.root=/srv/other-shards
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .entry import entry_point


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vt-infer", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--split", default=None, help="split to run over (default: the run's data.eval_split)")
    p.add_argument("--tag", default=None, help="checkpoint tag, or best / latest (default: the newest complete "
                                               "one)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_DIR/infer/<split>-<tag>)")
    p.add_argument("--nproc", type=int, default=1, help="processes on this machine; they split the videos")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to the run's MLflow run")
    p.add_argument("--bn-batch-stats", action="store_true",
                   help="BatchNorm with each chunk's own statistics (train mode), as the BN 'cheating' experiment "
                        "does: it leaks later frames into earlier ones; never for reporting a result")
    return p


class UsageError(ValueError):
    """A mistake in the command line or the run folder, in one line; `kind` prefixes it."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


def resolve(run_dir: Path, tag: str | None, overrides: list[str], split: str | None = None, prog: str = "vt-eval"):
    """(cfg, tag, split) of a run folder and the checkpoint to use (the newest complete one by default), with the
    data and the checkpoint checked before any process group starts (framework/preflight.py)."""
    from . import preflight
    from .checkpoint import BEST, LATEST, checkpoint_dir, newest, read_pointer
    from .config import ConfigError, load_saved_config

    if not (run_dir / "config.yaml").is_file():
        raise UsageError(f"{run_dir} is not a run folder (no config.yaml)", f"{prog}: error")
    if tag in (LATEST, BEST):  # the pointers' names, e.g. --tag best
        tag = read_pointer(checkpoint_dir(run_dir), tag) or tag
    last = newest(run_dir)
    tag = tag or (last.tag if last else None)
    if tag is None:
        raise UsageError(f"no complete checkpoint in {checkpoint_dir(run_dir)}", f"{prog}: error")
    try:
        cfg, _ = load_saved_config(run_dir / "config.yaml", [*overrides, f"run_dir={run_dir}"])
    except ConfigError as e:
        raise UsageError(str(e), "config error") from None
    split = split or cfg.data.eval_split
    try:
        preflight.evaluation(cfg, split, checkpoint_dir(run_dir) / tag)
    except ConfigError as e:
        raise UsageError(str(e), f"{prog}: error") from None
    return cfg, tag, split


def load_model(cfg, run_dir: Path, tag: str, num_outputs: int):
    """The checkpoint's model, through DeepSpeed's loader (any ZeRO stage, bf16) with weights_only loading."""
    from .checkpoint import checkpoint_dir, load_weights, read_complete
    from .engine import build_engine
    from .models import build_model

    engine = build_engine(build_model(cfg.model, num_outputs), cfg)
    load_weights(engine, read_complete(checkpoint_dir(run_dir) / tag))
    return engine.module


def inference_tasks(cfg):
    """The run's tasks, for scoring only (no training split: no loss weights)."""
    from .data.manifest import Manifest
    from .tasks import build_tasks

    return build_tasks(cfg.task, cfg.data.root, Manifest.load(Path(cfg.data.root)), train_videos=[],
                       model_cfg=cfg.model)


def run(cfg, run_dir: Path, tag: str, split: str, progress: bool = True, bn_batch_stats: bool = False):
    """Inference on this rank's share; (env, tasks, results of every video, report on rank 0)."""
    from .env import detect, init_distributed
    from .evaluate import eval_loader, run_inference

    env = detect()
    device = init_distributed(env)
    tasks = inference_tasks(cfg)
    loader = eval_loader(cfg.data, split, env.rank, env.world_size, tasks)
    model = load_model(cfg, run_dir, tag, tasks.out_dim)
    results = run_inference(model, loader, device, tasks, progress and env.is_main, bn_batch_stats)
    return env, tasks, results, tasks.evaluate(results) if env.is_main else {}


def predictions_table(tasks, results):
    import pandas as pd

    return pd.concat([pd.DataFrame(tasks.columns(r)) for r in results], ignore_index=True)


def write_outputs(tasks, results, report: dict, out: Path) -> list[Path]:
    from .reports import write_json

    out.mkdir(parents=True, exist_ok=True)
    table = predictions_table(tasks, results)
    table.to_parquet(out / "predictions.parquet", index=False)
    table.to_csv(out / "predictions.csv", index=False)
    write_json(out / "report.json", report)
    files = tasks.write_files(results, report, out)
    return [out / "predictions.parquet", out / "predictions.csv", out / "report.json", *files]


def log_to_mlflow(cfg, report: dict, out: Path, split: str, tag: str) -> None:
    from .reports import scalars
    from .tracking import build_tracker

    tracker = build_tracker(cfg, is_main=True)
    tracker.log_metrics({f"infer/{split}/{k}": v for k, v in scalars(report).items()}, step=0)
    tracker.log_artifact(out, f"infer/{out.name}")
    tracker.set_tags({f"infer_{split}": f"{tag} → {out}"})
    tracker.close()


def relaunch(argv: list[str], nproc: int) -> int:
    """--nproc N outside torchrun: run this command in N processes (one machine)."""
    from launch.local import local_env

    args, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--nproc="):
            skip = False
            continue
        skip = arg == "--nproc"
        if not skip:
            args.append(arg)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "framework.infer", *args]
    return subprocess.call(cmd, env=local_env(nproc))


@entry_point
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a, overrides = parser().parse_known_args(argv)
    try:
        cfg, tag, split = resolve(a.run_dir, a.tag, overrides, a.split, prog="vt-infer")
    except UsageError as e:
        print(f"{e.kind}: {e}", file=sys.stderr)
        return 2
    if a.nproc > 1 and "RANK" not in os.environ:
        return relaunch(argv, a.nproc)
    from .checkpoint import CheckpointError
    from .env import shutdown

    try:
        env, tasks, results, report = run(cfg, a.run_dir, tag, split, bn_batch_stats=a.bn_batch_stats)
    except CheckpointError as e:
        print(f"vt-infer: error: {e}", file=sys.stderr)
        shutdown()
        return 2
    if env.is_main:
        out = a.out or a.run_dir / "infer" / f"{split}-{tag}"
        write_outputs(tasks, results, report, out)
        for line in tasks.headlines(report):
            print(line)
        print(f"predictions, report and plots: {out}")
        if cfg.logging.mlflow.enabled and not a.no_mlflow:
            log_to_mlflow(cfg, report, out, split, tag)
    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
