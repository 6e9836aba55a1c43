"""`vt-probe bias` and `vt-probe fusion`: the analysis tools on a trained run's checkpoint.

    vt-probe bias RUN_DIR [--split S] [--layers 3 4] [--pairs N] [--styles invert sepia ...] [--tag T] [--out DIR]
        static vs dynamic bias of the chosen stages (default: all) on N pairs of split S (default: the run's
        eval split): bias.json, bias_table.txt, bias_layers.png, bias_units.png, bias_channels.png in
        --out (default RUN_DIR/bias/<split>-<tag>), logged to the run's MLflow run when it has one.
    vt-probe fusion RUN_DIR [--split S] [--samples K] [--tag T] [--out DIR] [--seed N]
        for a run trained with analysis.fusion.enabled: the learned drop rates and per-layer marginals, K
        sub-networks sampled from the rates and scored on split S (default: the run's val split, else its eval
        split) without retraining, the best one exported (fusion.json, marginals.png, subnets.png,
        best_subnet.yaml, best_subnet_overrides.txt in --out, default RUN_DIR/fusion/<split>-<tag>).
Any other argument is a dotted config override of the run (e.g. data.root=/elsewhere).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def bias_parser() -> argparse.ArgumentParser:
    from .pairs import DEFAULT_STYLES, STYLES

    p = argparse.ArgumentParser(prog="vt-probe bias", description="static vs dynamic bias of a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--split", default=None, help="split the pairs come from (default: the run's eval split)")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="backbone stages (default: all; -1: the last)")
    p.add_argument("--pairs", type=int, default=256, help="number of pairs (half dynamic, half static)")
    p.add_argument("--styles", nargs="+", default=list(DEFAULT_STYLES), choices=list(STYLES),
                   help="appearance transforms of the pairs (framework/analysis/pairs.py)")
    p.add_argument("--threshold", type=float, default=0.5, help="unit-label threshold on the per-channel scores")
    p.add_argument("--seed", type=int, default=0, help="draws of the styles and permutations")
    _common(p)
    return p


def fusion_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vt-probe fusion", description="Variational DropPath analysis of a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--split", default=None, help="split the sub-networks are scored on (default: val, else eval)")
    p.add_argument("--samples", type=int, default=20, help="sub-networks sampled from the learned drop rates")
    p.add_argument("--seed", type=int, default=0, help="draws of the sub-networks")
    _common(p)
    return p


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tag", default=None, help="checkpoint tag (default: the latest)")
    p.add_argument("--out", type=Path, default=None, help="output folder")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to the run's MLflow run")


def load(run_dir: Path, tag, overrides, split, prog: str):
    """(cfg, tag, split, tasks, model in eval mode, device): the run folder, its checkpoint and split checked as
    vt-eval / vt-infer check them (framework/infer.py), the model through DeepSpeed's loader."""
    from ..env import detect, init_distributed
    from ..infer import inference_tasks, load_model, resolve

    cfg, tag, split = resolve(run_dir, tag, overrides, split, prog=prog)
    device = init_distributed(detect())
    tasks = inference_tasks(cfg)
    return cfg, tag, split, tasks, load_model(cfg, run_dir, tag, tasks.out_dim).eval(), device


def log_to_run(cfg, metrics: dict, out: Path, artifact_path: str, tags: dict) -> None:
    from ..tracking import build_tracker

    tracker = build_tracker(cfg, is_main=True)
    tracker.log_metrics(metrics, step=0)
    tracker.log_artifact(out, artifact_path)
    tracker.set_tags(tags)
    tracker.close()


def run_bias(a, overrides) -> int:
    from . import bias
    from .features import check_layers, is_channels_last
    from .pairs import PairSource, PairSpec

    cfg, tag, split, _, model, device = load(a.run_dir, a.tag, overrides, a.split, "vt-probe bias")
    layers = check_layers(model.backbone, a.layers)
    d = cfg.data
    source = PairSource(d.root, split, cfg.model.clip_len or d.seq_len, a.pairs, d.batch_size,
                        PairSpec(tuple(a.styles), a.seed), stride=d.clip_stride, num_workers=d.num_workers)
    report = bias.measure(model, source, layers, device, a.threshold, is_channels_last(cfg.model.backbone),
                          progress=True, about={"split": split, "checkpoint": tag, "run_dir": str(a.run_dir)})
    out = a.out or a.run_dir / "bias" / f"{split}-{tag}"
    bias.write(report, out)
    print(bias.table(report))
    print(f"report, table and plots: {out}")
    if cfg.logging.mlflow.enabled and not a.no_mlflow:
        log_to_run(cfg, {f"bias/{split}/{k}": v for k, v in bias.scalars(report).items()}, out, f"bias/{out.name}",
                   {f"bias_{split}": f"{tag} → {out}"})
    return 0


def run_fusion(a, overrides) -> int:
    from . import fusion
    from ..data.manifest import Manifest

    cfg, tag, split, tasks, model, device = load(a.run_dir, a.tag, overrides, a.split, "vt-probe fusion")
    fusion.require_template(model)
    if a.split is None:  # the val split when the data has one, else the eval split resolve() checked
        splits = {v.split for v in Manifest.load(Path(cfg.data.root)).videos}
        split = cfg.data.val_split if cfg.data.val_split in splits else split
    report = fusion.analyse(model, cfg, tasks, split, a.samples, a.seed, device, progress=True)
    report.update(checkpoint=tag, run_dir=str(a.run_dir))
    out = a.out or a.run_dir / "fusion" / f"{split}-{tag}"
    fusion.write(report, cfg, out)
    print(fusion.table(report))
    print(f"report, plots and the best sub-network's config: {out}")
    if cfg.logging.mlflow.enabled and not a.no_mlflow:
        log_to_run(cfg, fusion.scalars(report, split), out, f"fusion/{out.name}", {f"fusion_{split}": f"{tag} → {out}"})
    return 0


def main(command: str, argv: list[str]) -> int:
    from ..config import ConfigError
    from ..env import shutdown
    from ..infer import UsageError

    parser = bias_parser() if command == "bias" else fusion_parser()
    a, overrides = parser.parse_known_args(argv)
    try:
        return (run_bias if command == "bias" else run_fusion)(a, overrides)
    except UsageError as e:  # the run folder, its config, checkpoint or split (as vt-eval says it)
        print(f"{e.kind}: {e}", file=sys.stderr)
        return 2
    except (ConfigError, ValueError, FileNotFoundError) as e:  # a layer, a style, a non-template (and CheckpointError)
        print(f"vt-probe {command}: error: {e}", file=sys.stderr)
        return 2
    finally:
        shutdown()
