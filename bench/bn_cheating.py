"""The BN "cheating" effect in anticipation (Rivoir et al., On the Pitfalls of Batch Normalization), reproduced.

Data (`data_prep.synthetic.generate_anticipation`): frames of noise and one instrument used at unpredictable
times, so nothing before an appearance predicts it: an online model can only learn the prior. Two models are
trained on the anticipation task in the framework's own way (streamed chunks of consecutive frames, the LSTM
state carried): a trainable-BatchNorm ResNet-18 (`model.norm=bn model.allow_batchnorm=true`) and the same with
GroupNorm. Each is scored on the held-out videos in eval mode (running statistics) and "in train mode" (each
chunk normalised by its own statistics, which include its later frames: vt-infer --bn-batch-stats).
Expected: BN in train mode beats its eval mode and the GN model (it sees the future through the statistics);
GN is the same in both modes.

    python -m bench.bn_cheating [--steps 600] [--out docs/BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from framework.entry import entry_point

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Setting:
    steps: int = 600
    videos: int = 16  # 4 held out
    test_videos: int = 4
    horizon: float = 0.25  # minutes
    seq_len: int = 16
    size: int = 32
    seed: int = 0
    backbone: str = "resnet18"  # any backbone with BatchNorm (the test trains a smaller one)


def make_data(root: Path, s: Setting) -> Path:
    from data_prep.shards import ShardSpec, VideoItem, write_shards
    from data_prep.synthetic import AnticipationSpec, generate_anticipation

    if (root / "manifest.json").is_file():
        return root
    spec = AnticipationSpec(num_videos=s.videos, test_videos=s.test_videos, size=s.size, seed=s.seed)
    records = generate_anticipation(root, spec, progress=False)
    items = [VideoItem(r["id"], r["video"], r["annotation"], r["split"], r["tools"]) for r in records]
    write_shards(root, items, ShardSpec(fps=spec.fps, size=s.size), progress=False)
    return root


def overrides(data: Path, run_dir: Path, norm: str, s: Setting) -> list[str]:
    bn = ["model.norm=bn", "model.allow_batchnorm=true"] if norm == "bn" else [f"model.norm={norm}"]
    # one sequence per step: the BatchNorm batch is one chunk of consecutive frames of one video
    return [f"data.root={data}", f"run_dir={run_dir}", "name=bn-cheating", "task=anticipation",
            f"task.anticipation.horizon={s.horizon}", "data.batch_size=1", f"data.seq_len={s.seq_len}",
            f"model.backbone={s.backbone}", "model.hidden=64", f"trainer.max_steps={s.steps}",
            f"trainer.checkpoint_every={s.steps}",
            "trainer.lr=0.001", "trainer.warmup_steps=20", "trainer.log_every=50", "trainer.eval=false",
            "trainer.resume=none", "logging.mlflow.enabled=false", f"seed={s.seed}", *bn]


def train(data: Path, run_dir: Path, norm: str, s: Setting) -> float:
    """The framework's Trainer, in this process (one process start for both models)."""
    from framework.config import load_config
    from framework.env import detect
    from framework.trainer import Trainer

    start = time.time()
    cfg, raw = load_config(overrides(data, run_dir, norm, s))
    Trainer(cfg, raw, detect(), "cpu").fit()
    return time.time() - start


def score(run_dir: Path) -> dict:
    """wMAE etc. of the run's checkpoint on its test split, in eval mode and with BN batch statistics
    (in this process: torch.distributed must be up, as for any engine)."""
    from framework.evaluate import eval_loader, infer
    from framework.infer import inference_tasks, load_model, resolve

    cfg, tag, _ = resolve(run_dir, None, [])
    tasks = inference_tasks(cfg)
    loader = eval_loader(cfg.data, cfg.data.eval_split, 0, 1)
    model = load_model(cfg, run_dir, tag, tasks.out_dim)
    out = {}
    for mode in ("eval", "train"):
        results = infer(copy.deepcopy(model), loader, "cpu", bn_batch_stats=mode == "train")
        r = tasks.evaluate(results)["anticipation"]
        out[mode] = {k: r[k] for k in ("wMAE", "inMAE", "outMAE")}
    return out


def run(work: Path, s: Setting) -> dict:
    from framework.env import detect, init_distributed

    data = make_data(work / "data", s)
    init_distributed(detect())
    result = {"setting": s.__dict__}
    for norm in ("bn", "gn"):
        seconds = train(data, work / f"run-{norm}", norm, s)
        result[norm] = {**score(work / f"run-{norm}"), "train_seconds": round(seconds, 1)}
    return result


def section(r: dict, machine: str) -> str:
    s = r["setting"]
    rows = "\n".join(f"| {label} | {r[n][m]['wMAE']:.3f} | {r[n][m]['inMAE']:.3f} | {r[n][m]['outMAE']:.3f} |"
                     for n, label0 in (("bn", "BatchNorm (trainable)"), ("gn", "GroupNorm"))
                     for m, label in (("train", f"{label0}, scored in train mode"), ("eval", f"{label0}, scored in eval mode")))
    return f"""
## BN "cheating" in anticipation (`python -m bench.bn_cheating`)
Machine: {machine}. Synthetic anticipation data (`vt-prep synthetic --kind anticipation`): {s['videos']} noise
videos ({s['test_videos']} held out), one instrument at unpredictable times, 2 fps, {s['size']}² frames; horizon
{s['horizon']} min. {s['backbone']} + LSTM, one sequence of {s['seq_len']} consecutive frames per step (state carried),
{s['steps']} steps, 1 process; the same seed and data for both models. Errors in minutes
(wMAE = (inMAE + outMAE) / 2, per instrument over all held-out frames).

| model, scoring | wMAE | inMAE | outMAE |
|---|---|---|---|
{rows}

Trainable BN scored with each chunk's own statistics ("train mode", as `--cheat` in the pitfalls_bn code)
sees the instrument coming through the statistics of the chunk's later frames; with its running statistics
the same model has nothing to go on. GroupNorm normalises each frame on its own: the same in both modes.
"""


@entry_point
def main() -> None:
    from bench.report import machine, write_section

    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=Setting.steps)
    p.add_argument("--videos", type=int, default=Setting.videos)
    p.add_argument("--size", type=int, default=Setting.size, help="frame side")
    p.add_argument("--backbone", default=Setting.backbone)
    p.add_argument("--seed", type=int, default=Setting.seed)
    p.add_argument("--work", type=Path, default=REPO / "data" / "bench-bn-cheating")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    r = run(a.work, Setting(steps=a.steps, videos=a.videos, size=a.size, backbone=a.backbone,
                              seed=a.seed))
    print(json.dumps({"benchmark": "bn_cheating", **r}))
    if a.out:
        write_section(a.out, "bn_cheating", section(r, machine()))


if __name__ == "__main__":
    main()
