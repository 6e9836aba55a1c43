"""Streaming inference throughput: `framework.evaluate.infer` (what vt-infer and the evaluation run: state
carried, per-video outputs collected, times and labels attached) against a plain `torch.no_grad()` loop of the
same model over the same batches from the same loader, one process.

    python -m bench.inference [--rounds 3] [--out docs/BENCHMARKS.md]     (needs data/demo: make demo or
                                                                         vt-prep synthetic --out data/demo)
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from framework.entry import entry_point

REPO = Path(__file__).resolve().parents[1]


def plain_loop(model, loader) -> int:
    state = model.initial_state(loader.batch_size)
    frames = 0
    with torch.no_grad():
        for batch in loader:
            out, state = model(batch.frames, state, batch.starts)
            frames += int(batch.valid.sum())
    return frames


def framework_loop(model, loader) -> int:
    from framework.evaluate import infer

    return sum(len(r.frame) for r in infer(model, loader, "cpu"))


def measure(fn, model, loader) -> float:
    start = time.perf_counter()
    frames = fn(model, loader)
    return frames / (time.perf_counter() - start)


@entry_point
def main() -> None:
    from bench.report import machine, write_section
    from framework.config import load_config
    from framework.env import detect, init_distributed
    from framework.evaluate import eval_loader
    from framework.models import build_model
    from framework.tasks import build_tasks

    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    init_distributed(detect())
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count())))
    cfg, _ = load_config(["experiment=demo", f"data.root={REPO / 'data/demo'}"])
    loader = eval_loader(cfg.data, cfg.data.eval_split, 0, 1)
    tasks = build_tasks(cfg.task, cfg.data.root, loader.manifest, [])
    model = build_model(cfg.model, tasks.out_dim).eval()
    plain_loop(model, loader)  # warm-up: FFCV's JIT, first allocations
    fps = {"plain": [], "framework": []}
    for _ in range(a.rounds):  # alternate, so neither gets the warmer machine every time
        fps["framework"].append(measure(framework_loop, model, loader))
        fps["plain"].append(measure(plain_loop, model, loader))
    best = {k: max(v) for k, v in fps.items()}
    result = {"benchmark": "inference", "machine": machine(), "load_average": os.getloadavg()[0],
              "frames": sum(v.num_frames for v in loader.videos), "plain_fps": round(best["plain"], 1),
              "framework_fps": round(best["framework"], 1), "ratio": round(best["framework"] / best["plain"], 3),
              "rounds": {k: [round(x, 1) for x in v] for k, v in fps.items()}}
    print(json.dumps(result))
    if a.out:
        write_section(a.out, "inference", f"""
## Streaming inference throughput (`python -m bench.inference`)
Machine: {result['machine']}; load average {result['load_average']:.2f} at the start. Demo model (ResNet-18-GN +
LSTM, 64×64) over the demo test split ({result['frames']} frames, {cfg.data.batch_size} lanes × {cfg.data.seq_len} frames
per batch, read from the FFCV shards in both loops), one process; best of {a.rounds} alternating rounds.

| loop | frames/s |
|---|---|
| plain `torch.no_grad()` loop, state carried, outputs dropped | {result['plain_fps']} |
| `framework.evaluate.infer` (vt-infer, evaluation): outputs collected per video, times and labels attached | {result['framework_fps']} |
| **ratio** (goal ≥ 0.9) | **{result['ratio']}** |
""")


if __name__ == "__main__":
    main()
