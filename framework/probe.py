"""`vt-probe leakage [hydra overrides]`: does a frame's output depend on frames it should not see?
(`vt-probe bias RUN_DIR ...` and `vt-probe fusion RUN_DIR ...`: the analysis tools, framework/analysis/cli.py.)

For the output at frame t it perturbs (a) the frames after t and (b) the other sequences of the batch, and
reports the largest change, in train and in eval mode. A model without batch-dependent normalisation and with
a causal head shows 0 (up to float noise); trainable BatchNorm in train mode shows a clear leak.

With a video backbone the outputs are time steps of `temporal_stride` frames, and the outputs compared are the
steps made only of frames ≤ t. A video backbone sees a whole clip at once (model.clip_len), so a t inside a
clip shows a future leak by design: pick t at the end of a clip to check that nothing crosses clip boundaries.
"""
from __future__ import annotations

import copy
import json
import sys

import torch

from .entry import entry_point

TOLERANCE = 1e-5


def _forward(model, frames: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)  # identical dropout masks in every call: only a leak can change the output
    reset = torch.ones(frames.shape[0], dtype=torch.bool, device=frames.device)
    with torch.no_grad():
        out, _ = model(frames, model.initial_state(frames.shape[0], device=frames.device), reset)
    return out.float()


def probe_leakage(model, frames: torch.Tensor, t: int, seed: int = 0) -> dict:
    """frames: uint8 [B, T, H, W, 3] with B >= 2 and t < T − 1. Returns {mode: {future, other_sequences}}."""
    if frames.shape[0] < 2 or not 0 <= t < frames.shape[1] - 1:
        raise ValueError("the probe needs at least 2 sequences and a frame t with frames after it")
    seen = (t + 1) // model.temporal_stride  # output steps made only of frames <= t
    if seen == 0:
        raise ValueError(f"frame t={t} ends no output step of a backbone with temporal stride {model.temporal_stride}")
    gen = torch.Generator().manual_seed(seed + 1)
    noise = torch.randint(0, 256, frames.shape, generator=gen, dtype=torch.uint8).to(frames.device)
    future, others = frames.clone(), frames.clone()
    future[:, t + 1:] = noise[:, t + 1:]
    others[1:] = noise[1:]
    report = {}
    for mode in ("train", "eval"):
        m = copy.deepcopy(model).train(mode == "train")  # a copy: BN running statistics must not drift
        base = _forward(m, frames, seed)
        report[mode] = {
            "future": (_forward(m, future, seed)[:, :seen] - base[:, :seen]).abs().max().item(),
            "other_sequences": (_forward(m, others, seed)[0] - base[0]).abs().max().item(),
        }
    return report


def format_report(report: dict) -> str:
    rows = ["mode   perturbed          max |Δ output at ≤ t|   verdict"]
    for mode, kinds in report.items():
        for kind, value in kinds.items():
            verdict = "LEAK" if value > TOLERANCE else "ok"
            rows.append(f"{mode:<6} {kind:<18} {value:>21.3e}   {verdict}")
    return "\n".join(rows)


@entry_point
def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError, load_config

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("bias", "fusion"):
        from .analysis.cli import main as analysis_main

        return analysis_main(argv[0], argv[1:])
    if not argv or argv[0] != "leakage":
        print("usage: vt-probe leakage [hydra overrides] | vt-probe bias RUN_DIR [...] | vt-probe fusion RUN_DIR [...]",
              file=sys.stderr)
        return 2
    try:
        cfg, _ = load_config(argv[1:])
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    from .data.loader import SequenceLoader
    from .models import build_model

    d = cfg.data
    loader = SequenceLoader(d.root, d.train_split, 0, 1, max(2, d.batch_size), d.seq_len, seed=cfg.seed)
    batch = next(iter(loader))
    torch.manual_seed(cfg.seed)
    try:
        model = build_model(cfg.model, len(loader.manifest.labels))
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    clip = cfg.model.clip_len or d.seq_len
    t = d.seq_len // 2 - 1 if clip == d.seq_len else clip - 1  # a clip boundary, for a video backbone
    report = probe_leakage(model, batch.frames, t=t)
    print(format_report(report))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
