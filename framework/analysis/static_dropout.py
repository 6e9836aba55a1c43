"""StaticDropout — an ENGINEERING DESIGN, not the published method.

Kowal et al.'s TPAMI extension (arXiv 2211.01783) names StaticDropout, "a semantically guided dropout that
debiases a model from static information toward dynamics", but how it picks channels, its probability, where
and when it applies and its gains are not public (reference/analysis.md §1.8). This module implements the
description, with these choices of our own:

- which channels: those of the chosen stages (`analysis.static_dropout.layers`, default the last) that the
  unit-level estimator labels *static* (r_stat > t and r_dyn < t, §1.6, t = `threshold`), measured on pairs
  from the training split (`pairs` of them, the styles of `analysis.styles`) with the model as it is;
- when: first at step `start` (default `every`; nothing is dropped before), then re-measured every `every`
  steps, so the set follows the model as it changes;
- how: during training only (the backbone in train mode), each static channel of each sample (a frame for a 2D
  backbone, a clip for a 3D one) is zeroed with probability `p` and the kept static channels are scaled by
  1/(1 − p) (inverted dropout: evaluation needs no change); the other channels are untouched.
  It runs as a stage tap inside the stage's unit: under activation checkpointing the mask is recomputed with
  the RNG replayed, so the gradients are those of the forward that was taken.
- every rank measures the same pairs with the same weights, and rank 0's masks are broadcast, so all ranks
  drop the same channels. The masks go into the checkpoints (a resumed run drops what it dropped).
"""
from __future__ import annotations

import json

import torch
import torch.distributed as dist

from . import estimator
from .bias import collect, layer_report
from .features import channel_axis, check_layers, is_channels_last
from .hooks import Hook
from .pairs import PairSource, PairSpec


def drop_channels(x: torch.Tensor, static: torch.Tensor, p: float, channels_last: bool = False) -> torch.Tensor:
    """Each sample's channels flagged in `static` [C] zeroed with probability p, the kept ones scaled by
    1/(1 − p); the other channels untouched."""
    if not bool(static.any()) or p == 0:
        return x
    axis = channel_axis(x, channels_last) % x.ndim
    shape = [x.shape[0] if i == 0 else x.shape[i] if i == axis else 1 for i in range(x.ndim)]
    flagged = static.to(x.device).view([-1 if i == axis else 1 for i in range(x.ndim)])
    kept = (torch.rand(shape, device=x.device) >= p).to(x.dtype) / (1 - p)
    return x * torch.where(flagged, kept, torch.ones((), dtype=x.dtype, device=x.device))


class StaticDropout(Hook):
    def __init__(self, cfg, trainer):
        self.cfg = cfg.analysis.static_dropout
        self.trainer = trainer
        self.model = trainer.engine.module
        backbone = self.model.backbone
        self.layers = check_layers(backbone, self.cfg.layers)
        self.channels_last = is_channels_last(cfg.model.backbone)
        self.masks: dict[int, torch.Tensor | None] = {k: None for k in self.layers}
        d = cfg.data
        self.source = PairSource(d.root, d.train_split, cfg.model.clip_len or d.seq_len, self.cfg.pairs,
                                 d.batch_size, PairSpec(tuple(cfg.analysis.styles), cfg.seed), stride=d.clip_stride)
        for k in self.layers:
            backbone.taps.setdefault(k, []).append(self._tap(k))

    def _tap(self, layer: int):
        def drop(x: torch.Tensor) -> torch.Tensor:
            mask = self.masks[layer]
            if not self.model.backbone.training or mask is None:
                return x
            return drop_channels(x, mask, self.cfg.p, self.channels_last)
        return drop

    def due(self, step: int) -> bool:
        first = self.cfg.first
        return step >= first and (step - first) % self.cfg.every == 0

    def after_step(self, step: int) -> None:
        if self.due(step):
            self.measure(step)

    def measure(self, step: int) -> None:
        t = self.trainer
        with torch.random.fork_rng(devices=[]):  # measuring draws nothing from the training run's streams
            za, zb, factor = collect(self.model, self.source, self.layers, t.device, self.channels_last)
        record = {"step": step, "layers": {}}
        for k in self.layers:
            r = estimator.unit_scores(za[k], zb[k], factor)
            mask = torch.from_numpy(estimator.unit_labels(r, self.cfg.threshold)
                                    == estimator.UNIT_LABELS.index("static"))
            if dist.is_initialized() and dist.get_world_size() > 1:
                flag = mask.to(torch.uint8)
                dist.broadcast(flag, 0)
                mask = flag.bool()
            self.masks[k] = mask
            scores = layer_report(za[k], zb[k], factor, self.cfg.threshold)
            record["layers"][f"stage{k}"] = {"static_channels": int(mask.sum()), "channels": int(mask.numel()),
                                             "scores": scores["scores"], "units": scores["units"]}
        if t.env.is_main:
            with open(t.run_dir / "static_dropout.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            t.tracker.log_metrics({f"static_dropout/stage{k}/static_channels": float(m.sum())
                                   for k, m in self.masks.items()}, step)

    def state_dict(self) -> dict:
        return {"masks": {k: None if m is None else m.clone() for k, m in self.masks.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.masks.update(state["masks"])
