"""Static vs dynamic bias on synthetic clips with a known answer (Kowal et al.'s estimator, `vt-probe bias`).

Data (`vt-prep synthetic --kind motion|appearance`): motion-only clips (a blob crossing a random texture
rightward or leftward: both classes show the same set of frames, in opposite orders) and appearance-only clips
(stripes vs checkers, random motion). Models, trained with the framework's Trainer in this process on
`task=clip` (random clips, a linear head averaging over time):
- tsn_appearance / tsn_motion: a 2D ResNet-18 per frame with temporal average pooling (TSN). Its clip feature
  is invariant to the order of the frames, so it must come out static-biased on both tasks, and at chance on
  the motion task;
- 3d_motion: a 3D backbone (default a small (2+1)D network: fusion3d with ST units only) on the motion task:
  expected dynamic-biased where it decides (its last stage);
- 3d_motion_static_dropout: the same with StaticDropout (an engineering design, framework/analysis/
  static_dropout.py) on the last two stages: expected to move toward dynamic (measured: the penultimate stage
  does; on the last, already dynamic, its effect went either way: docs/ANALYSIS.md §4).
Each model is probed on the held-out clips (all stages), and the 3D model's bias is also measured during
training (analysis.bias_every) to show when it settles.

    python -m bench.static_dynamic [--steps 300] [--backbone3d r2plus1d_18 --kwargs3d '{}'] [--out docs/BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from framework.entry import entry_point

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Setting:
    """The defaults are the small settings under which the directions held on five seeds, minutes on 2 CPU
    cores (docs/ANALYSIS.md); e.g. --backbone3d r2plus1d_18 --kwargs3d '{}' is for a machine with a GPU."""
    steps: int = 300
    tsn_steps: int | None = 200  # the 2D models' steps (None: steps); their static bias does not depend on it
    clips: int = 160  # per task; test_clips of them held out (with 24 training clips the 3D model memorised
    test_clips: int = 32  # each video's texture instead of learning the motion)
    frames: int = 8  # clip length (the source clips have 16 frames)
    size: int = 24
    batch: int = 8
    pairs: int = 256
    backbone3d: str = "fusion3d"
    kwargs3d: dict = field(default_factory=lambda: {"widths": [8, 16, 32], "depths": [1, 1, 1],
                                                    "architecture": ["ST", "ST", "ST"]})  # a small (2+1)D net
    lr: float = 3e-3
    sd_p: float = 0.5
    sd_layers: tuple = (-2, -1)
    sd_every: int = 50
    bias_every: int = 50
    seed: int = 0
    models: tuple = ("tsn_appearance", "tsn_motion", "3d_motion", "3d_motion_static_dropout")


def make_data(root: Path, kind: str, s: Setting) -> Path:
    from data_prep.cli import main as prep

    if not (root / "manifest.json").is_file():
        code = prep(["synthetic", "--kind", kind, "--out", str(root), "--videos", str(s.clips), "--test-videos",
                     str(s.test_clips), "--source-fps", "8", "--source-size", str(s.size), "--fps", "8", "--size",
                     str(s.size), "--seed", str(s.seed), "--quiet"])
        assert code == 0, f"vt-prep synthetic --kind {kind} failed ({code})"
    return root


def model_plan(name: str, s: Setting) -> tuple[str, str, list[str]]:
    """(task kind, backbone, extra overrides) of one of the benchmark's models."""
    three_d = [f"model.backbone={s.backbone3d}"] + [f"+model.backbone_kwargs.{k}={_value(v)}"
                                                   for k, v in s.kwargs3d.items()]
    sd = [f"analysis.static_dropout.p={s.sd_p}", f"analysis.static_dropout.layers=[{','.join(map(str, s.sd_layers))}]",
          f"analysis.static_dropout.every={s.sd_every}", f"analysis.static_dropout.pairs={min(s.pairs, 128)}"]
    watch = [f"analysis.bias_every={s.bias_every}", f"analysis.bias_pairs={min(s.pairs, 128)}"] if s.bias_every else []
    return {"tsn_appearance": ("appearance", "resnet18", ["model.backbone=resnet18"]),
            "tsn_motion": ("motion", "resnet18", ["model.backbone=resnet18"]),
            "3d_motion": ("motion", s.backbone3d, three_d + watch),
            "3d_motion_static_dropout": ("motion", s.backbone3d, three_d + sd + watch)}[name]


def _value(v) -> str:
    return f"[{','.join(map(str, v))}]" if isinstance(v, (list, tuple)) else str(v)


def overrides(data: Path, run_dir: Path, s: Setting, extra: list[str], steps: int) -> list[str]:
    return [f"data.root={data}", f"run_dir={run_dir}", f"name={run_dir.name}", "task=clip", "data.sampling=clips",
            f"data.seq_len={s.frames}", f"data.batch_size={s.batch}", "model.head=linear",
            f"trainer.max_steps={steps}", f"trainer.checkpoint_every={steps}", f"trainer.lr={s.lr}",
            "trainer.warmup_steps=10", f"trainer.log_every={max(1, steps // 10)}", "trainer.resume=none",
            "task.clip.views=2", "task.clip.crops=1", "logging.mlflow.enabled=false", f"seed={s.seed}", *extra]


def train(run_dir: Path, ov: list[str]):
    """The framework's Trainer in this process; (trainer, held-out report, seconds)."""
    from framework.config import load_config
    from framework.env import detect
    from framework.trainer import Trainer

    start = time.time()
    cfg, raw = load_config(ov)
    trainer = Trainer(cfg, raw, detect(), "cpu")
    report = trainer.fit()
    return trainer, report, time.time() - start


def probe(trainer, data: Path, s: Setting) -> dict:
    """The bias of every stage on pairs of the held-out clips (as `vt-probe bias` computes it)."""
    from framework.analysis import bias
    from framework.analysis.features import check_layers
    from framework.analysis.pairs import PairSource, PairSpec

    model = trainer.engine.module
    source = PairSource(data, "test", s.frames, s.pairs, s.batch, PairSpec(seed=s.seed))
    return bias.measure(model, source, check_layers(model.backbone, None), "cpu")


def summary(report: dict) -> dict:
    """Per layer: the raw scores, the shares and the unit counts (no per-channel lists)."""
    return {name: {"s_dynamic": r["scores"]["dynamic"], "s_static": r["scores"]["static"],
                   "percent": r["percent"], "units": r["units"], "channels": r["channels"]}
            for name, r in report["layers"].items()}


def history(run_dir: Path) -> list[dict]:
    from framework.analysis.hooks import read_history

    path = run_dir / "bias_history.jsonl"
    if not path.is_file():
        return []
    return [{"step": h["step"], "layers": {n: {"s_dynamic": r["scores"]["dynamic"], "s_static": r["scores"]["static"]}
                                          for n, r in h["report"]["layers"].items()}} for h in read_history(path)]


def run(work: Path, s: Setting) -> dict:
    from framework.env import detect, init_distributed

    init_distributed(detect())  # once per process (a no-op when it is up)
    data = {kind: make_data(work / f"data-{kind}", kind, s) for kind in ("motion", "appearance")}
    out = {"setting": {**asdict(s), "sd_layers": list(s.sd_layers), "models": list(s.models)}, "models": {}}
    for name in s.models:
        kind, backbone, extra = model_plan(name, s)
        run_dir = work / f"run-{name}"
        steps = s.tsn_steps if name.startswith("tsn") and s.tsn_steps else s.steps
        trainer, report, seconds = train(run_dir, overrides(data[kind], run_dir, s, extra, steps))
        entry = {"task": kind, "backbone": backbone, "top1": report["clip"]["top1"], "train_seconds": round(seconds, 1),
                 "layers": summary(probe(trainer, data[kind], s)), "history": history(run_dir)}
        sd = run_dir / "static_dropout.jsonl"
        if sd.is_file():
            entry["static_dropout"] = [json.loads(line) for line in open(sd)]
        out["models"][name] = entry
        print(json.dumps({"model": name, "top1": entry["top1"], "seconds": entry["train_seconds"]}), flush=True)
    return out


def section(r: dict, machine: str, load: str) -> str:
    s = r["setting"]
    rows = []
    for name, m in r["models"].items():
        for layer, v in m["layers"].items():
            u = v["units"]
            rows.append(f"| {name} | {m['task']} | {m['backbone']} | {m['top1']:.2f} | {layer} | {v['s_dynamic']:.3f} | "
                        f"{v['s_static']:.3f} | {v['percent']['dynamic']:.1f} / {v['percent']['static']:.1f} / "
                        f"{v['percent']['residual']:.1f} | {u['dynamic']}/{u['static']}/{u['joint']}/{u['residual']} "
                        f"({v['channels']}) |")
    hist = []
    for name, m in r["models"].items():
        for h in m["history"]:
            last = list(h["layers"])[-1]
            hist.append(f"| {name} | {h['step']} | {last} | {h['layers'][last]['s_dynamic']:.3f} | "
                        f"{h['layers'][last]['s_static']:.3f} |")
    return f"""
## Static vs dynamic bias on synthetic clips (`python -m bench.static_dynamic`)
Machine: {machine}; load while it ran: {load}. Synthetic action clips (`vt-prep synthetic --kind motion|appearance`):
{s['clips']} clips per task ({s['test_clips']} held out), 16 frames at {s['size']}²; training on random clips of
{s['frames']} frames, batch {s['batch']}, {s['steps']} steps, AdamW lr {s['lr']}, linear head averaging over time
(`task=clip`), seed {s['seed']}. 3D backbone: `{s['backbone3d']}` {s['kwargs3d'] or ''}. StaticDropout (our design):
p {s['sd_p']} on stages {s['sd_layers']}, static channels re-measured every {s['sd_every']} steps. Probe: {s['pairs']}
pairs of the held-out clips (half dynamic, half static; styles invert, channels, sepia, cartoon, canvas).
s_dyn / s_stat: raw layer scores; shares: the reference's percentages (dynamic / static / residual); units:
channels labelled dynamic/static/joint/residual at threshold 0.5 (of C).

| model | task | backbone | top-1 | layer | s_dyn | s_stat | shares % | units D/S/J/R (C) |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Bias during training (`analysis.bias_every`), last stage, pairs of the training clips:

| model | step | layer | s_dyn | s_stat |
|---|---|---|---|---|
{chr(10).join(hist)}
"""


@entry_point
def main() -> None:
    import os

    from bench.report import machine, write_section

    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=Setting.steps)
    p.add_argument("--tsn-steps", type=int, default=Setting.tsn_steps)
    p.add_argument("--clips", type=int, default=Setting.clips)
    p.add_argument("--test-clips", type=int, default=Setting.test_clips)
    p.add_argument("--size", type=int, default=Setting.size)
    p.add_argument("--pairs", type=int, default=Setting.pairs)
    p.add_argument("--backbone3d", default=Setting.backbone3d)
    p.add_argument("--kwargs3d", default=json.dumps(Setting().kwargs3d),
                   help="JSON of model.backbone_kwargs for the 3D backbone")
    p.add_argument("--lr", type=float, default=Setting.lr)
    p.add_argument("--sd-p", type=float, default=Setting.sd_p)
    p.add_argument("--sd-layers", type=int, nargs="+", default=list(Setting.sd_layers))
    p.add_argument("--sd-every", type=int, default=Setting.sd_every)
    p.add_argument("--bias-every", type=int, default=Setting.bias_every)
    p.add_argument("--seed", type=int, default=Setting.seed)
    p.add_argument("--models", nargs="+", default=list(Setting.models))
    p.add_argument("--work", type=Path, default=REPO / "data" / "bench-static-dynamic")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    s = Setting(steps=a.steps, tsn_steps=a.tsn_steps, clips=a.clips, test_clips=a.test_clips, size=a.size, pairs=a.pairs,
                backbone3d=a.backbone3d, kwargs3d=json.loads(a.kwargs3d), lr=a.lr, sd_p=a.sd_p,
                sd_layers=tuple(a.sd_layers), sd_every=a.sd_every, bias_every=a.bias_every, seed=a.seed,
                models=tuple(a.models))
    load = "load average %.1f / %.1f / %.1f" % os.getloadavg()
    r = run(a.work, s)
    print(json.dumps({"benchmark": "static_dynamic", **r}))
    if a.out:
        write_section(a.out, "static_dynamic", section(r, machine(), load))


if __name__ == "__main__":
    main()
