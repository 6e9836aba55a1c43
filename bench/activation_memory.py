"""Saved activation memory per frame: ResNet-50-GN + LSTM at 224², checkpointing off / per stage / per stage
with frozen stages / whole backbone.

On a GPU: the CUDA allocator's peak during forward+backward. On CPU (this machine): the process's peak
resident set (VmHWM, reset through /proc/self/clear_refs) during one forward+backward. Either way the
figure is the slope of the peak over the number of frames T (two values of T, one fresh process per
measurement), so the weights, gradients and one micro-chunk's recomputation — all constant in T — drop out.

    python -m bench.activation_memory [--frames 8 24] [--out docs/BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

SETTINGS = {  # name → model overrides
    "off": {},
    "stage": {"granularity": "stage"},
    "stage + 2 frozen stages": {"granularity": "stage", "freeze_stages": 2},
    "backbone": {"granularity": "backbone"},
}
SIZE, CHUNK = 224, 4


def peak_bytes(setting: str, frames: int, device: str) -> int:
    """One forward+backward of `frames` frames; the peak memory above the state after a warm-up step."""
    from framework.config import CheckpointingConfig, ModelConfig
    from framework.models import build_model

    opts = dict(SETTINGS[setting])
    ckpt = CheckpointingConfig(granularity=opts.pop("granularity", "none"))
    cfg = ModelConfig(backbone="resnet50", norm="gn", head="lstm", frame_chunk=CHUNK, checkpointing=ckpt, **opts)
    model = build_model(cfg, 7).to(device).train()

    def step(t: int) -> None:
        x = torch.randint(0, 256, (1, t, SIZE, SIZE, 3), dtype=torch.uint8, device=device)
        out, _ = model(x, model.initial_state(1, device=device), torch.ones(1, dtype=torch.bool, device=device))
        out.square().mean().backward()

    step(CHUNK)  # gradients allocated, allocator warm
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(frames)
        return torch.cuda.max_memory_allocated() - base
    base = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    step(frames)
    return _status("VmHWM") - base


def _status(field: str) -> int:
    line = next(ln for ln in open("/proc/self/status") if ln.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def measure(setting: str, frames: int) -> int:
    """In a fresh process, so that no earlier measurement's memory is counted."""
    out = subprocess.run([sys.executable, "-m", "bench.activation_memory", "--one", setting, str(frames)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, nargs=2, default=[8, 24])
    p.add_argument("--out", type=Path)
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if a.one:
        print(peak_bytes(a.one[0], int(a.one[1]), device))
        return
    lo, hi = a.frames
    per_frame = {s: (measure(s, hi) - measure(s, lo)) / (hi - lo) for s in SETTINGS}
    result = {"benchmark": "activation_memory", "machine": _machine(), "device": device,
              "method": "CUDA allocator peak" if device == "cuda" else "peak RSS (VmHWM) growth",
              "frames": [lo, hi], "mib_per_frame": {s: round(v / 2**20, 2) for s, v in per_frame.items()},
              "fraction_of_off": {s: round(v / per_frame["off"], 4) for s, v in per_frame.items()}}
    print(json.dumps(result))
    if a.out:
        _write(a.out, result)


def _machine() -> str:
    from bench.report import machine

    return machine()


def _write(doc: Path, r: dict) -> None:
    from bench.report import write_section

    rows = "\n".join(f"| {s} | {r['mib_per_frame'][s]:.2f} | {r['fraction_of_off'][s]:.3f} |" for s in SETTINGS)
    write_section(doc, f"activation_memory_{r['device']}", f"""
## Saved activation memory per frame (`python -m bench.activation_memory`)
Machine: {r['machine']}. ResNet-50-GN + LSTM, 224×224 frames, fp32, frame micro-chunks of {CHUNK}.
Method: {r['method']} during one forward+backward, measured at T = {r['frames'][0]} and {r['frames'][1]} frames in
fresh processes; the figure is the slope (weights, gradients and one micro-chunk's recomputation are constant
in T and drop out). Goal: per-stage checkpointing ≤ 1/8 of the unchecked memory per frame.

| checkpointing | MiB / frame | fraction of off |
|---|---|---|
{rows}
""")


if __name__ == "__main__":
    main()
