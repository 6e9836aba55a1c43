"""Saved activation memory per frame: ResNet-50-GN + LSTM at 224², checkpointing off / per stage / per stage
with frozen stages / whole backbone; with --backbone, the same for other backbones (ConvNeXt-T at 224²,
r2plus1d_18 on 16-frame clips at 112²: `--backbone convnext_tiny r2plus1d_18`).

Two measures, each as a slope over the number of frames T (two values of T, one fresh process per
measurement), so that the weights, gradients and one micro-chunk's recomputation — constant in T — drop out:
- saved: the bytes kept for the backward: every tensor autograd packs (saved-tensor hooks) and every
  checkpoint's input (DeepSpeed keeps those outside autograd's saved tensors), each storage counted once,
  weights excluded. Exact and deterministic: the definition of saved activation memory.
- peak: on a GPU the CUDA allocator's peak during forward+backward; on CPU (this machine) the process's peak
  resident set (VmHWM, reset through /proc/self/clear_refs), which also holds transient buffers and the
  allocator's slack, so it is noisier.

    python -m bench.activation_memory [--frames 8 24] [--out docs/BENCHMARKS.md]
    python -m bench.activation_memory --backbone convnext_tiny r2plus1d_18 [--out docs/BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from bench.report import machine, memory_bytes

SETTINGS = {  # name → model overrides
    "off": {},
    "stage": {"granularity": "stage"},
    "stage + 2 frozen stages": {"granularity": "stage", "freeze_stages": 2},
    "backbone": {"granularity": "backbone"},
    # the alternative the framework does not use (framework/models/staged.py says why)
    "stage, DeepSpeed non_reentrant_checkpoint": {"granularity": "stage", "non_reentrant": True},
}
SIZE, CHUNK = 224, 4
# --backbone: name → (frame size, clip length for a video backbone or None, frames at the two measurements)
BACKBONES = {"resnet50": (224, None, (8, 24)), "convnext_tiny": (224, None, (8, 24)),
             "r2plus1d_18": (112, 16, (16, 48))}
ZOO_SETTINGS = ("off", "stage", "backbone")


def measure_once(setting: str, frames: int, device: str, backbone: str = "resnet50") -> dict:
    """One forward+backward of `frames` frames: saved bytes, and the peak above the state after a warm-up."""
    from framework.config import CheckpointingConfig, ModelConfig
    from framework.models import build_model

    size, clip, _ = BACKBONES[backbone]
    opts = dict(SETTINGS[setting])
    non_reentrant = opts.pop("non_reentrant", False)
    ckpt = CheckpointingConfig(granularity=opts.pop("granularity", "none"))
    chunk = clip or CHUNK  # a video backbone's micro-chunk is one clip
    cfg = ModelConfig(backbone=backbone, norm="gn", head="lstm", frame_chunk=chunk, clip_len=clip,
                      checkpointing=ckpt, **opts)
    model = build_model(cfg, 7).to(device).train()

    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    from framework.models import staged

    keep_checkpoint_input = _non_reentrant if non_reentrant else staged.checkpoint

    def counted_checkpoint(function, x):  # DeepSpeed keeps a checkpoint's input outside autograd's saved tensors
        pack(x)
        return keep_checkpoint_input(function, x)

    staged.checkpoint = counted_checkpoint

    def step(t: int) -> None:
        x = torch.randint(0, 256, (1, t, size, size, 3), dtype=torch.uint8, device=device)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out, _ = model(x, model.initial_state(1, device=device), torch.ones(1, dtype=torch.bool, device=device))
        out.square().mean().backward()

    step(chunk)  # gradients allocated, allocator warm
    saved.clear()
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(frames)
        return {"saved": sum(saved.values()), "peak": torch.cuda.max_memory_allocated() - base}
    base = memory_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    step(frames)
    return {"saved": sum(saved.values()), "peak": memory_bytes("VmHWM") - base}


def _non_reentrant(function, x):
    import deepspeed

    return deepspeed.checkpointing.non_reentrant_checkpoint(function, x)


def measure(setting: str, frames: int, backbone: str = "resnet50") -> dict:
    """In a fresh process, so that no earlier measurement's memory is counted."""
    out = subprocess.run([sys.executable, "-m", "bench.activation_memory", "--one", setting, str(frames), backbone],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def slopes(backbone: str, settings, lo: int, hi: int) -> dict:
    """Per setting: MiB per frame of the saved bytes and of the peak, and their fractions of `off`."""
    runs = {s: (measure(s, lo, backbone), measure(s, hi, backbone)) for s in settings}
    slope = {k: {s: (r[1][k] - r[0][k]) / (hi - lo) for s, r in runs.items()} for k in ("saved", "peak")}
    return {**{f"{k}_mib_per_frame": {s: round(v / 2**20, 2) for s, v in slope[k].items()} for k in slope},
            **{f"{k}_fraction_of_off": {s: round(v / slope[k]["off"], 4) for s, v in slope[k].items()}
               for k in slope}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, nargs=2, default=[8, 24])
    p.add_argument("--out", type=Path)
    p.add_argument("--backbone", nargs="+", choices=sorted(set(BACKBONES) - {"resnet50"}),
                   help="measure these backbones (off / stage / backbone) instead of the ResNet-50 settings")
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    peak_method = "CUDA allocator peak" if device == "cuda" else "peak RSS (VmHWM) growth"
    if a.one:
        print(json.dumps(measure_once(a.one[0], int(a.one[1]), device, a.one[2])))
        return
    if a.backbone:
        results = [{"benchmark": "activation_memory", "backbone": b, "machine": machine(), "device": device,
                    "peak_method": peak_method, "size": BACKBONES[b][0], "clip": BACKBONES[b][1],
                    "frames": list(BACKBONES[b][2]), "load_average": list(os.getloadavg()),
                    **slopes(b, ZOO_SETTINGS, *BACKBONES[b][2])} for b in a.backbone]
        for r in results:
            print(json.dumps(r))
        if a.out:
            _write_zoo(a.out, results)
        return
    lo, hi = a.frames
    result = {"benchmark": "activation_memory", "machine": machine(), "device": device, "peak_method": peak_method,
              "frames": [lo, hi], **slopes("resnet50", SETTINGS, lo, hi)}
    print(json.dumps(result))
    if a.out:
        _write(a.out, result)


def _write(doc: Path, r: dict) -> None:
    from bench.report import write_section

    # bf16 halves the float boundaries; the uint8 input (3 bytes a pixel) stays; 2 GiB for weights, gradients,
    # AdamW state and one micro-chunk's recomputation
    uint8_mib = SIZE * SIZE * 3 / 2**20
    bf16 = {k: (r["saved_mib_per_frame"][k] - uint8_mib) / 2 + uint8_mib for k in ("stage", "backbone")}
    frames_80 = {k: int((80 - 2) * 1024 / v) for k, v in bf16.items()}
    rows = "\n".join(f"| {s} | {r['saved_mib_per_frame'][s]:.2f} | {r['saved_fraction_of_off'][s]:.3f} | "
                     f"{r['peak_mib_per_frame'][s]:.2f} | {r['peak_fraction_of_off'][s]:.3f} |" for s in SETTINGS)
    write_section(doc, f"activation_memory_{r['device']}", f"""
## Saved activation memory per frame (`python -m bench.activation_memory`)
Machine: {r['machine']}. ResNet-50-GN + LSTM, 224×224 frames, fp32, frame micro-chunks of {CHUNK}.
Slopes between T = {r['frames'][0]} and {r['frames'][1]} frames (fresh processes): *saved* = bytes kept for the
backward (saved tensors and checkpoint inputs, each storage once, weights excluded; exact); *peak* = {r['peak_method']} during
forward+backward (includes transient buffers and allocator slack; noisier). Goal: per-stage checkpointing
≤ 1/8 of the unchecked memory per frame.

| checkpointing | saved MiB / frame | fraction of off | peak MiB / frame | fraction of off |
|---|---|---|---|---|
{rows}

Reading it: `stage` keeps each frame's uint8 input and the outputs of the stem, layer1, layer2 and layer3
(0.14 + 0.77 + 3.06 + 1.53 + 0.77 = 6.3 MiB at 224², fp32), which is what the saved column shows; two frozen
stages drop the uint8 input and the stem's output. Peak-RSS slopes below the saved ones (even negative) are
the allocator reusing memory freed earlier in the step: judge the goal on the saved column. The last row is
DeepSpeed's `non_reentrant_checkpoint` at the same boundaries (its saved column counts the same inputs; what it
holds beyond them shows in the peak column), against the reentrant `checkpoint` the framework uses.

Projection, not a measurement (no GPU in this run): in bf16 the kept bytes become ≈{bf16['stage']:.1f} MiB per frame with
`stage` and ≈{bf16['backbone']:.2f} with `backbone`, so an 80 GB GPU (2 GiB set aside) would hold ≈{frames_80['stage']:,} and
≈{frames_80['backbone']:,} frames of ResNet-50-GN + LSTM at 224² (memory alone; goal ≥ 10,000). Measure it on a GPU with
`python -m bench.longest_sequence --budget-gib 78 --backbone resnet50 --size 224 --bf16`.
""")


def _write_zoo(doc: Path, results: list[dict]) -> None:
    from bench.report import write_section

    r0 = results[0]
    def row(r, s):
        shape = f"clips of {r['clip']}" if r["clip"] else f"micro-chunks of {CHUNK}"
        return (f"| {r['backbone']} | {r['size']}², {shape} | {s} | {r['saved_mib_per_frame'][s]:.2f} | "
                f"{r['saved_fraction_of_off'][s]:.3f} | {r['peak_mib_per_frame'][s]:.2f} |")

    rows = "\n".join(row(r, s) for r in results for s in ZOO_SETTINGS)
    loads = ", ".join(f"{r['backbone']}: {r['load_average'][0]:.1f}" for r in results)
    write_section(doc, f"activation_memory_zoo_{r0['device']}", f"""
## Saved activation memory per frame, other backbones (`python -m bench.activation_memory --backbone ...`)
Machine: {r0['machine']}; 1-minute load average when each started: {loads} (shared machine; the saved column does
not depend on load). GN policy (a no-op for ConvNeXt's LayerNorm) + LSTM, fp32. Slopes between the two frame
counts ({', '.join(f"{r['backbone']}: {r['frames'][0]} and {r['frames'][1]}" for r in results)}), fresh processes;
*saved* and *peak* as in the ResNet-50 section. r2plus1d_18 runs on 16-frame clips (one clip per micro-chunk), so
its figures are per input frame of a clip.

| backbone | input | checkpointing | saved MiB / frame | fraction of off | peak MiB / frame |
|---|---|---|---|---|---|
{rows}

Reading it: `stage` keeps each stage's input: for ConvNeXt-T the uint8 frame and the outputs of the stem and
stages 1..3, 0.14 + 1.15 + 1.15 + 0.57 + 0.29 = 3.3 MiB a frame at 224² in fp32; for r2plus1d_18 the clip's uint8
frames and the outputs of the stem and layer1..layer3, halving in time from layer2 on, 0.04 + 0.77 + 0.77 + 0.19 +
0.05 = 1.8 MiB a frame at 112². `backbone` keeps only the uint8 input (3 bytes a pixel) and the head's few inputs.
Negative peak slopes are the allocator reusing memory freed earlier in the step (see the ResNet-50 section).
""")


if __name__ == "__main__":
    main()
