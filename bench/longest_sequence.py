"""Longest sequence that trains end to end within a memory budget: one full training step (forward, backward,
AdamW step) of a CNN + LSTM on T frames, T searched by doubling then bisection (to within 5 %).

Each trial runs in a fresh process. On a GPU the trial's figure is the CUDA allocator's peak (an
out-of-memory error counts as over budget); on CPU it is the peak resident set (VmHWM), and a trial whose
resident set passes the budget is stopped there (its answer is known; the rest of its step is minutes).

    python -m bench.longest_sequence --budget-gib 78 --backbone resnet50 --size 224 --bf16   # an 80 GB GPU
    python -m bench.longest_sequence --budget-gib 3 --backbone resnet18 --size 64            # CPU, small
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from bench.report import memory_bytes


GPU_GIB = 78  # an 80 GB GPU, 2 GiB set aside for the CUDA context and the allocator
OVER_BUDGET = 3  # a trial's exit code: stopped when its resident set passed the budget


def stop_over_budget(budget_gib: float) -> None:
    """CPU trials: leave as soon as the resident set passes the budget."""
    def watch():
        while memory_bytes() <= budget_gib * 2**30:
            time.sleep(0.05)
        os._exit(OVER_BUDGET)

    threading.Thread(target=watch, daemon=True).start()


def trial(a: argparse.Namespace, frames: int) -> int:
    """Peak bytes of one training step on `frames` frames (in this process)."""
    from framework.config import CheckpointingConfig, ModelConfig
    from framework.models import build_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        stop_over_budget(a.budget_gib)
    cfg = ModelConfig(backbone=a.backbone, norm="gn", head="lstm", frame_chunk=a.chunk,
                      freeze_stages=a.freeze, checkpointing=CheckpointingConfig(granularity=a.granularity))
    model = build_model(cfg, 7).to(device, torch.bfloat16 if a.bf16 else torch.float32).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randint(0, 256, (1, frames, a.size, a.size, 3), dtype=torch.uint8, device=device)
    try:
        out, _ = model(x, model.initial_state(1, device=device), torch.ones(1, dtype=torch.bool, device=device))
        out.float().square().mean().backward()
        opt.step()
    except torch.cuda.OutOfMemoryError:
        return 1 << 62
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    return memory_bytes("VmHWM")


def fits(a: argparse.Namespace, frames: int) -> bool:
    """Runs a trial; records its peak (None: stopped over budget or failed) in a.trials."""
    cmd = [sys.executable, "-m", "bench.longest_sequence", "--trial", str(frames), *a.passthrough]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:  # over budget, or e.g. the kernel's OOM killer on CPU
        why = "over budget" if out.returncode == OVER_BUDGET else f"failed ({out.returncode})"
        print(f"T={frames}: {why}", file=sys.stderr)
        a.trials.append((frames, None))
        return False
    peak = int(out.stdout.strip().splitlines()[-1])
    a.trials.append((frames, peak))
    print(f"T={frames}: peak {peak / 2**30:.2f} GiB", file=sys.stderr)
    return peak <= a.budget_gib * 2**30


def search(a: argparse.Namespace) -> int:
    lo, hi = 0, a.start
    while fits(a, hi):
        lo, hi = hi, hi * 2
    while hi - lo > max(a.chunk, lo // 20):
        mid = (lo + hi) // 2 // a.chunk * a.chunk
        lo, hi = (mid, hi) if fits(a, mid) else (lo, mid)
    return lo


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--budget-gib", type=float, default=80.0)
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--granularity", default="stage")
    p.add_argument("--freeze", type=int, default=0)
    p.add_argument("--chunk", type=int, default=16, help="frames per backbone micro-chunk")
    p.add_argument("--start", type=int, default=256)
    p.add_argument("--trial", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    if a.trial:
        print(trial(a, a.trial))
        return
    a.passthrough = [f"--budget-gib={a.budget_gib}", f"--backbone={a.backbone}", f"--size={a.size}", f"--granularity={a.granularity}",
                     f"--freeze={a.freeze}", f"--chunk={a.chunk}", *(["--bf16"] if a.bf16 else [])]
    from bench.report import machine

    a.trials = []
    longest = search(a)
    result = {"benchmark": "longest_sequence", "machine": machine(), "budget_gib": a.budget_gib,
              "model": f"{a.backbone}-GN + LSTM", "size": a.size, "dtype": "bf16" if a.bf16 else "fp32",
              "checkpointing": a.granularity, "freeze_stages": a.freeze, "frame_chunk": a.chunk,
              "longest_frames": longest,
              "trials": [[t, None if b is None else round(b / 2**30, 3)] for t, b in sorted(a.trials)]}
    print(json.dumps(result))
    if a.out:
        write(a.out, result, "gpu" if torch.cuda.is_available() else "cpu")


def growth(trials: list) -> tuple[float, float]:
    """(GiB per frame, fixed GiB): the line through the smallest and the largest trial that fit."""
    fit = [(t, b) for t, b in trials if b is not None]
    (t0, b0), (t1, b1) = fit[0], fit[-1]
    slope = (b1 - b0) / (t1 - t0)
    return slope, b0 - slope * t0


def projection(r: dict) -> str:
    """From a CPU run: the frames an 80 GB GPU would hold at the measured growth per frame."""
    fit = [t for t, b in r["trials"] if b is not None]
    if len(fit) < 2:
        return ""
    slope, fixed = growth(r["trials"])
    bf16 = slope / 2 if r["dtype"] == "fp32" else slope
    frames = int((GPU_GIB - fixed) / bf16)
    return f"""
Growth per frame between T = {fit[0]} and {fit[-1]}: {slope * 1024:.2f} MiB; the rest ({fixed:.2f} GiB) is the
weights, the AdamW state, one micro-chunk's recomputation and the Python process. Projection, not a
measurement: at this growth in bf16 ({bf16 * 1024:.2f} MiB per frame), an 80 GB GPU ({GPU_GIB} GiB usable) holds
≈{frames:,} frames (goal ≥ 10,000). Measure it on one with
`python -m bench.longest_sequence --budget-gib {GPU_GIB} --backbone resnet50 --size 224 --bf16 --out docs/BENCHMARKS.md`.
"""


def write(doc: Path, r: dict, key: str) -> None:
    from bench.report import write_section

    rows = "\n".join(f"| {t} | {'over budget' if b is None else f'{b:.2f}'} |" for t, b in r["trials"])
    peak = "peak GiB (CUDA allocator)" if key == "gpu" else "peak GiB (resident set)"
    args = f"--budget-gib {r['budget_gib']:g} --backbone {r['model'].split('-GN')[0]} --size {r['size']}" + \
        (" --bf16" if r["dtype"] == "bf16" else "") + \
        f" --granularity {r['checkpointing']} --freeze {r['freeze_stages']} --chunk {r['frame_chunk']}"
    write_section(doc, f"longest_sequence_{key}", f"""
## Longest sequence within a memory budget (`python -m bench.longest_sequence`)
`python -m bench.longest_sequence {args}`

Machine: {r['machine']}. {r['model']}, {r['size']}×{r['size']}, {r['dtype']}, checkpointing
`{r['checkpointing']}`, {r['freeze_stages']} frozen stages, micro-chunks of {r['frame_chunk']} frames, one full
training step (forward, backward, AdamW), batch 1. Budget {r['budget_gib']} GiB → **{r['longest_frames']} frames**
(to within 5 %).

| frames | {peak} |
|---|---|
{rows}
{projection(r) if key == "cpu" else ""}""")


if __name__ == "__main__":
    main()
