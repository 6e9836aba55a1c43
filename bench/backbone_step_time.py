"""Training step time with other backbones: the framework vs a hand-written PyTorch loop, bench/step_time.py's
two loops (same batches from the demo shards, same optimizer and schedule, one process), for one 2D and one 3D
backbone. The ratio is what the framework's machinery costs around a heavier backbone.

    python -m bench.backbone_step_time [--backbones convnext_tiny mc3_18] [--steps 12] [--out docs/BENCHMARKS.md]

mc3_18 is the 3D backbone with temporal stride 1, so it trains on the demo's per-frame phase labels; each
sequence of 8 frames is one clip.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from bench.step_time import batches, framework_step, interleaved, plain_step
from framework.entry import entry_point


def measure(backbone: str, steps: int, warmup: int, threads: int) -> dict:
    from framework.config import load_config

    cfg, _ = load_config(["experiment=demo", f"model.backbone={backbone}"])
    data = batches(cfg, steps + warmup)
    load = os.getloadavg()[0]
    torch.set_num_threads(threads)
    medians = interleaved({"framework": framework_step(cfg), "plain": plain_step(cfg)}, data, warmup)
    plain, ours = medians["plain"], medians["framework"]
    return {"backbone": backbone, "frames_per_step": cfg.data.batch_size * cfg.data.seq_len,
            "size": data[0].frames.shape[2], "plain_pytorch_s": round(plain, 4), "framework_s": round(ours, 4),
            "ratio": round(ours / plain, 3), "load_average": [round(load, 1), round(os.getloadavg()[0], 1)]}


@entry_point
def main() -> None:
    from bench.report import machine, write_section
    from framework.env import detect, init_distributed

    p = argparse.ArgumentParser()
    p.add_argument("--backbones", nargs="+", default=["convnext_tiny", "mc3_18"])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    threads = int(os.environ.get("BENCH_THREADS", os.cpu_count()))
    init_distributed(detect())  # before timing anything: DeepSpeed's CPU set-up changes torch's thread count
    rows = [measure(b, a.steps, a.warmup, threads) for b in a.backbones]
    for r in rows:
        print(json.dumps({"benchmark": "backbone_step_time", "machine": machine(), "threads": threads, **r}))
    if a.out:
        table = "\n".join(f"| {r['backbone']} | {r['frames_per_step']} × {r['size']}² | {r['plain_pytorch_s']:.3f} | "
                          f"{r['framework_s']:.3f} | **{r['ratio']:.3f}** | {r['load_average'][0]} → "
                          f"{r['load_average'][1]} |" for r in rows)
        write_section(a.out, "step_time_backbones", f"""
## Training step time with other backbones (`python -m bench.backbone_step_time`)
Machine: {machine()}, {threads} threads, one process. The two loops of `bench.step_time` (demo batches
preloaded, AdamW + warmup/cosine + clipping, LSTM head, GN policy) with a 2D and a 3D backbone; median of
{a.steps} steps after {a.warmup} warm-up steps, the two loops taking turns step by step. mc3_18 sees each 8-frame
sequence as one clip. The machine was shared: the last column is the 1-minute load average at the start and the
end; bursts of other jobs move single runs a lot: re-run on a quiet machine for a figure to quote.

| backbone | frames per step | hand-written PyTorch s / step | framework s / step | ratio | load |
|---|---|---|---|---|---|
{table}
""")


if __name__ == "__main__":
    main()
