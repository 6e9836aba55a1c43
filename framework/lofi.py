"""LoFi (Xu et al., NeurIPS 2021; reference/metrics.md §5.1): train the encoder and the head end to end at
reduced fidelity so that untrimmed videos fit, cycling through fidelities, then freeze the encoder and train
the head from scratch at full fidelity (`lofi.head_steps`).

A fidelity is (r_t, r_s): a batch keeps every r_t-th frame of its window (the same span of the video in r_t
times fewer frames: fewer snippets) and shrinks its frames to round(H / r_s) × round(W / r_s).

The batch composition rule (constant memory): the batch size B stays the same at every fidelity, as LoFi
keeps it (multigrid would grow B instead; reference §7 says not to mix the two), and the configured
fidelities must keep r_t · r_s² equal (within `lofi.tolerance`), so T'·H'·W' — the frames times the pixels the
backbone sees, to which its activation memory is proportional — is the same for every batch of the cycle.
The defaults are LoFi's S, T and ST configurations: (1, 2), (4, 1), (2, √2), each a quarter of the full
fidelity's T·H·W.

Cycles (after the multigrid method): `long` changes the fidelity at epoch boundaries (epoch e uses fidelity
e mod n), `short` every `every` batches (step s uses ⌊s / every⌋ mod n). Both are functions of the position,
so a resumed run continues the cycle exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Fidelity:
    temporal: int  # r_t: keep every r_t-th frame
    spatial: float  # r_s: frames shrink by this factor on each side

    @property
    def memory(self) -> float:
        """Memory relative to full fidelity under the rule: 1 / (r_t · r_s²)."""
        return 1.0 / (self.temporal * self.spatial ** 2)

    def side(self, n: int) -> int:
        return max(1, round(n / self.spatial))


FULL = Fidelity(1, 1.0)


def fidelities(cfg) -> list[Fidelity]:
    return [Fidelity(int(t), float(s)) for t, s in cfg.fidelities]


class Schedule:
    """The fidelity in force at each (epoch, step); FULL when LoFi is off."""

    def __init__(self, cfg):
        self.enabled, self.cycle, self.every = cfg.enabled, cfg.cycle, cfg.every
        self.levels = fidelities(cfg) if cfg.enabled else [FULL]

    def at(self, epoch: int, step: int) -> Fidelity:
        if not self.enabled:
            return FULL
        k = epoch if self.cycle == "long" else step // self.every
        return self.levels[k % len(self.levels)]


def reduce_time(batch, r: int):
    """Every r-th frame of each lane's window (all per-frame fields alike); `lengths` (the valid frames of the
    whole window) becomes the count of the valid frames kept."""
    if r == 1:
        return batch
    keep = slice(None, None, r)
    return replace(batch, frames=batch.frames[:, keep], labels=batch.labels[:, keep], valid=batch.valid[:, keep],
                   frame=batch.frame[:, keep],
                   lengths=None if batch.lengths is None else -(-batch.lengths // r))


def resize(frames: torch.Tensor, fidelity: Fidelity) -> torch.Tensor:
    """uint8 [B, T, H, W, 3] → uint8 [B, T, H', W', 3] (bilinear, antialiased), H' = round(H / r_s)."""
    if fidelity.spatial == 1:
        return frames
    B, T, H, W, _ = frames.shape
    size = (fidelity.side(H), fidelity.side(W))
    out = torch.empty((B, T, *size, 3), dtype=torch.uint8, device=frames.device)
    for b in range(B):  # one lane at a time: the float copy of a whole batch would cost 4 bytes a pixel
        x = frames[b].permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        out[b] = y.round_().clamp_(0, 255).permute(0, 2, 3, 1).to(torch.uint8)
    return out


def check(cfg, seq_len: int) -> None:
    """The constant-memory rule and what the windows need; raises ConfigError with one line."""
    from .config import ConfigError

    levels = fidelities(cfg)
    products = [f.temporal * f.spatial ** 2 for f in levels]
    spread = max(products) / min(products) - 1
    if spread > cfg.tolerance:
        raise ConfigError(
            "lofi.fidelities must keep r_t · r_s² equal (LoFi keeps the batch size and trades frames for pixels, "
            f"so memory per batch stays constant): got {', '.join(f'{p:.3g}' for p in products)} "
            f"({spread:.0%} apart, lofi.tolerance={cfg.tolerance})")
    bad = [f.temporal for f in levels if seq_len % f.temporal]
    if bad:
        raise ConfigError(f"data.seq_len={seq_len} is not a multiple of lofi's temporal factor {bad[0]}")


def whole_backbone_stages(model_cfg) -> int:
    """How many stages model.freeze_stages needs to freeze the whole encoder."""
    from .models.backbones import find

    known = find(model_cfg.backbone).stages(model_cfg.backbone)
    if known is not None:
        return known[0]
    from .models.backbone import build_backbone

    backbone, _ = build_backbone(model_cfg.backbone, model_cfg.norm, None, model_cfg.allow_batchnorm,
                                 model_cfg.drop_path, model_cfg.backbone_kwargs)
    return len(backbone.layout.stages)


def head_stage(cfg, raw, weights_file) -> tuple:
    """The final stage's config: the encoder of the LoFi stage's last checkpoint, frozen whole; the head
    from scratch; full fidelity; `lofi.head_steps` steps; its own run folder `<run_dir>/head`."""
    from omegaconf import OmegaConf

    from .config import Config

    raw = OmegaConf.merge(raw, OmegaConf.create({
        "run_dir": f"{cfg.run_dir}/head", "name": f"{cfg.name}-head",
        "model": {"pretrained": str(weights_file), "freeze_stages": whole_backbone_stages(cfg.model)},
        "trainer": {"max_steps": cfg.lofi.head_steps, "resume": "auto", "eval": bool(raw.trainer.eval),
                    "warmup_steps": min(cfg.trainer.warmup_steps, cfg.lofi.head_steps)},
        "lofi": {"enabled": False, "head_steps": 0},
        "logging": {"mlflow": {"run_name": f"{cfg.logging.mlflow.run_name or cfg.name} (head, full fidelity)"}},
    }))
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), raw)), raw


def describe(f: Fidelity, frames: int, side: tuple[int, int]) -> dict[str, float]:
    """What the trainer logs every step: the factors and the shape they give."""
    return {"lofi/temporal": float(f.temporal), "lofi/spatial": float(f.spatial), "lofi/frames": float(frames),
            "lofi/height": float(side[0]), "lofi/width": float(side[1]),
            "lofi/memory_fraction": float(f.memory) if math.isfinite(f.memory) else 1.0}
