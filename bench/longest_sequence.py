"""Longest sequence that trains end to end within a memory budget: one full training step (forward, backward,
AdamW step) of a CNN + LSTM on T frames, T searched by doubling then bisection (to within 5 %).

Each trial runs in a fresh process. On a GPU the trial's figure is the CUDA allocator's peak (an
out-of-memory error counts as over budget); on CPU it is the peak resident set (VmHWM).

    python -m bench.longest_sequence --budget-gib 80 --backbone resnet50 --size 224 --bf16   # an 80 GB GPU
    python -m bench.longest_sequence --budget-gib 3 --backbone resnet18 --size 64            # CPU, small
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch


def trial(a: argparse.Namespace, frames: int) -> int:
    """Peak bytes of one training step on `frames` frames (in this process)."""
    from framework.config import CheckpointingConfig, ModelConfig
    from framework.models import build_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
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
    line = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def fits(a: argparse.Namespace, frames: int) -> bool:
    cmd = [sys.executable, "-m", "bench.longest_sequence", "--trial", str(frames), *a.passthrough]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:  # e.g. the kernel's OOM killer on CPU
        return False
    peak = int(out.stdout.strip().splitlines()[-1])
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
    a.passthrough = [f"--backbone={a.backbone}", f"--size={a.size}", f"--granularity={a.granularity}",
                     f"--freeze={a.freeze}", f"--chunk={a.chunk}", *(["--bf16"] if a.bf16 else [])]
    from bench.report import machine, write_section

    longest = search(a)
    result = {"benchmark": "longest_sequence", "machine": machine(), "budget_gib": a.budget_gib,
              "model": f"{a.backbone}-GN + LSTM", "size": a.size, "dtype": "bf16" if a.bf16 else "fp32",
              "checkpointing": a.granularity, "freeze_stages": a.freeze, "frame_chunk": a.chunk,
              "longest_frames": longest}
    print(json.dumps(result))
    if a.out:
        key = "gpu" if torch.cuda.is_available() else "cpu"
        write_section(a.out, f"longest_sequence_{key}", f"""
## Longest sequence within a memory budget (`python -m bench.longest_sequence`)
Machine: {result['machine']}. {result['model']}, {a.size}×{a.size}, {result['dtype']}, checkpointing
`{a.granularity}`, {a.freeze} frozen stages, micro-chunks of {a.chunk} frames, one full training step, batch 1.
Budget {a.budget_gib} GiB → **{longest} frames** (to within 5 %).
""")


if __name__ == "__main__":
    main()
