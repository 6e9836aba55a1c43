"""Training step time: the framework (DeepSpeed engine, carried state) vs a hand-written PyTorch loop.

Same model (demo config: ResNet-18-GN + LSTM), same batches (preloaded from the demo shards, so data
loading is out of both), same AdamW + warmup/cosine schedule + gradient clipping, one process.

    python -m bench.step_time [--steps 120] [--out docs/BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from framework.entry import entry_point

REPO = Path(__file__).resolve().parents[1]


def batches(cfg, n: int):
    from framework.data.loader import SequenceLoader

    d = cfg.data
    loader = SequenceLoader(REPO / d.root, d.train_split, 0, 1, d.batch_size, d.seq_len, seed=0)
    out = []
    while len(out) < n:
        out += list(loader)
    return out[:n]


def interleaved(steps: dict, data, warmup: int) -> dict:
    """Per-step wall times of each loop, the loops taking turns step by step (and turns at going first), so
    that load from other work on a shared machine falls on both alike; returns the median of each."""
    times = {name: [] for name in steps}
    for i, b in enumerate(data):
        for name in (list(steps) if i % 2 else list(steps)[::-1]):
            start = time.perf_counter()
            steps[name](b)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def framework_step(cfg, nonfinite: str = "stop"):
    """The Trainer's own train_step (no MLflow: its tracker is the no-op one). nonfinite=off: without the
    non-finite check (framework/nonfinite.py)."""
    from omegaconf import OmegaConf

    from framework.env import detect
    from framework.trainer import Trainer

    cfg.logging.mlflow.enabled = False
    cfg.trainer.nonfinite = nonfinite
    return Trainer(cfg, OmegaConf.create({}), detect(), "cpu").train_step


def plain_step(cfg):
    from framework.engine import make_optimizer, warmup_cosine
    from framework.models import build_model
    from framework.models.heads import detach_state
    from framework.tasks.phase import cross_entropy_sum

    torch.manual_seed(0)
    model = build_model(cfg.model, 5)
    opt = make_optimizer(model, cfg.trainer)
    sched = warmup_cosine(opt, cfg.trainer.warmup_steps, cfg.trainer.max_steps)
    state = model.initial_state(cfg.data.batch_size)

    def step(b):
        nonlocal state
        logits, new_state = model(b.frames, state, b.starts)
        loss = cross_entropy_sum(logits, b.labels.masked_fill(~b.valid, -1)) / b.valid.sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.deepspeed.grad_clip)
        opt.step()
        sched.step()
        state = detach_state(new_state)

    return step


@entry_point
def main() -> None:
    from bench.report import machine, write_section
    from framework.config import load_config

    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=120)  # 40 steps spread ±0.02 on a shared VM
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--nonfinite", default=None, metavar="off,stop",
                   help="time the framework loop with each of these trainer.nonfinite modes instead (the check's "
                        "cost per step), taking turns; writes the nonfinite_check section")
    a = p.parse_args()
    if a.nonfinite:
        return nonfinite_cost(a)
    from framework.env import detect, init_distributed

    threads = int(os.environ.get("BENCH_THREADS", os.cpu_count()))
    init_distributed(detect())  # before timing anything: DeepSpeed's CPU set-up changes torch's thread count
    cfg, _ = load_config(["experiment=demo"])
    data = batches(cfg, a.steps + a.warmup)
    torch.set_num_threads(threads)
    medians = interleaved({"framework": framework_step(cfg), "plain": plain_step(cfg)}, data, a.warmup)
    plain, ours = medians["plain"], medians["framework"]
    frames = cfg.data.batch_size * cfg.data.seq_len
    result = {"benchmark": "step_time", "machine": machine(), "threads": threads,
              "frames_per_step": frames, "steps": a.steps, "plain_pytorch_s": round(plain, 4),
              "framework_s": round(ours, 4), "ratio": round(ours / plain, 3)}
    load = os.getloadavg()
    result["load_average"] = [round(x, 2) for x in load]
    print(json.dumps(result))
    load = ", ".join(f"{x:.2f}" for x in load)
    if a.out:
        write_section(a.out, "step_time", f"""
## Training step time: framework vs plain PyTorch (`make bench`, `python -m bench.step_time`)
Machine: {result['machine']}, {result['threads']} threads, one process.
Demo model (ResNet-18-GN + LSTM, 64×64 frames), {frames} frames per step ({cfg.data.batch_size} sequences × {cfg.data.seq_len}),
AdamW + warmup/cosine + clipping, batches preloaded; median of {a.steps} steps after {a.warmup} warm-up steps,
the two loops taking turns step by step (so that other work on the machine slows both alike).

| loop | s / step |
|---|---|
| hand-written PyTorch | {plain:.4f} |
| framework (DeepSpeed engine, ZeRO 0, carried state, one pass at sp=1) | {ours:.4f} |
| **ratio** | **{ours / plain:.3f}** |

The framework's extra work per step: the trainer builds each task's targets and counts correct frames, and
the non-finite check hands a device flag to the fused optimizer (framework/nonfinite.py). At ZeRO 0 in fp32
the clipping is torch's foreach `clip_grad_norm_`, as in the plain loop (DeepSpeed's own normed each gradient
in a Python loop and all-reduced the norm, even on one rank); the gradient all-reduce (a flatten and a copy
back even at world size 1) is skipped on one rank (framework/grad_reduce.py). At sp=1 the step is one
forward and one `engine.backward(loss)` (framework/relay.py; the relay's two autograd passes run only for
sp>1).
Measured under load: `uptime` {load}.
""")


def nonfinite_cost(a) -> None:
    """The framework loop with each trainer.nonfinite mode, the loops taking turns step by step."""
    import copy

    from bench.report import machine, write_section
    from framework.config import load_config
    from framework.env import detect, init_distributed

    threads = int(os.environ.get("BENCH_THREADS", os.cpu_count()))
    init_distributed(detect())
    cfg, _ = load_config(["experiment=demo"])
    data = batches(cfg, a.steps + a.warmup)
    torch.set_num_threads(threads)
    modes = a.nonfinite.split(",")
    medians = interleaved({m: framework_step(copy.deepcopy(cfg), m) for m in modes}, data, a.warmup)
    load = [round(x, 2) for x in os.getloadavg()]
    result = {"benchmark": "nonfinite_check", "machine": machine(), "threads": threads, "steps": a.steps,
              "framework_s": {m: round(t, 4) for m, t in medians.items()}, "load_average": load}
    print(json.dumps(result))
    if a.out:
        rows = "\n".join(f"| `trainer.nonfinite={m}` | {t:.4f} |" for m, t in medians.items())
        write_section(a.out, "nonfinite_check", f"""
## Cost of the non-finite check (`python -m bench.step_time --nonfinite off,stop`)
Machine: {result['machine']}, {threads} threads, one process; `uptime` at the end {', '.join(map(str, load))}.
The framework loop of the step-time benchmark (demo model, ZeRO 0 fp32: the check is ours there), with and
without framework/nonfinite.py; median of {a.steps} steps after {a.warmup} warm-up steps, the loops taking turns.

| loop | s / step |
|---|---|
{rows}

Per step the check reads nothing on the host: it keeps the gradient norm DeepSpeed's clipping computes, turns it
into a device flag for the fused optimizer, and the flags travel with the logging window.
""")


if __name__ == "__main__":
    main()
