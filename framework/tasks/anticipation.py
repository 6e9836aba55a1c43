"""`task=anticipation`: for each instrument, the time until it is used next (Rivoir et al. 2020).

Targets (framework/metrics/anticipation.py): minutes to the next occurrence clipped at the horizon h, the
network regressing y/h, plus the 3-class target present / outside the horizon / inside it. Output per frame:
K regressions then K × 3 class logits (K instruments). Loss, as the pitfalls_bn lineage: per frame
Σ_k [SmoothL1(reg_k, y_k/h) + w · CE(cls_k, class_k)] (its mean over instruments × K), w = `cls_weight`
(0.01), summed over labelled frames and averaged over stages. Report in minutes: in/out/w/e/pMAE per
instrument over all evaluated frames, averaged over instruments. Files: anticipation curves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ConfigError
from ..metrics import anticipation as ant
from .base import Task, TaskContext, TaskError, VideoCache, per_frame_targets

CONVENTION = ("minutes; per instrument over all evaluated frames pooled across videos, then the mean over "
              "instruments where defined; inMAE 0<y<h, outMAE y=h, wMAE (in+out)/2, eMAE 0<y<0.1h, pMAE "
              "0.1h<prediction<0.9h; frames with the instrument present are in none of in/out/w/eMAE; "
              "predictions not clipped at h")


@dataclass
class AnticipationConfig:
    weight: float = 1.0
    horizon: float = 3.0  # minutes
    instruments: Optional[list[str]] = None  # default: every tool of the manifest
    cls_weight: float = 0.01  # of the 3-class cross-entropy next to the regression

    def __post_init__(self):
        if self.weight < 0 or self.cls_weight < 0:
            raise ConfigError("task.anticipation.weight and cls_weight must be >= 0")
        if not self.horizon > 0:
            raise ConfigError(f"task.anticipation.horizon must be > 0 minutes, got {self.horizon}")


class AnticipationTask(Task):
    name = "anticipation"
    window = ("in_error", "in_frames", "out_error", "out_frames")

    def __init__(self, cfg: AnticipationConfig, ctx: TaskContext):
        super().__init__(cfg, ctx)
        tools = list(ctx.manifest.tools)
        if not tools:
            raise TaskError("task anticipation: the manifest lists no tools (prepare the data with --tools ...)")
        self.instruments = list(cfg.instruments or tools)
        unknown = [i for i in self.instruments if i not in tools]
        if unknown:
            raise TaskError(f"task.anticipation.instruments: {unknown} are not tools of the data ({tools})")
        self.columns_of = [tools.index(i) for i in self.instruments]
        self.h = float(cfg.horizon)
        self.k = len(self.instruments)
        self.out_dim = 4 * self.k
        self.table = VideoCache(self._minutes)

    def _minutes(self, video) -> np.ndarray:
        """[frames, K] float32 minutes to the next use; NaN for a video without tool annotation."""
        if not video.tools:
            return np.full((video.num_frames, self.k), np.nan, np.float32)
        present = self.ctx.manifest.tool_targets(video)[:, self.columns_of]
        return ant.time_to_next(present, video.fps, self.h).astype(np.float32)

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[..., 4K] → regressions [..., K] and class logits [..., K, 3]."""
        return out[..., :self.k], out[..., self.k:].unflatten(-1, (self.k, 3))

    def targets(self, batch, videos):
        return per_frame_targets(batch, videos, self.table, np.nan, np.float32)

    def loss(self, stages, target):
        reg, cls = self.split(stages.float())  # [B, T, S, K], [B, T, S, K, 3]
        labelled = ~torch.isnan(target)
        y = torch.nan_to_num(target / self.h).unsqueeze(2).expand_as(reg)
        klass = self._classes(target).unsqueeze(2).expand(reg.shape)
        l1 = F.smooth_l1_loss(reg, y, reduction="none")
        ce = F.cross_entropy(cls.flatten(0, -2), klass.flatten(), reduction="none").view(reg.shape)
        per = (l1 + self.cfg.cls_weight * ce) * labelled.unsqueeze(2)
        return per.sum() / stages.shape[2]

    def _classes(self, target: torch.Tensor) -> torch.Tensor:
        c = torch.full(target.shape, ant.INSIDE, dtype=torch.long, device=target.device)
        c[target <= 0] = ant.PRESENT
        c[target >= self.h] = ant.OUTSIDE
        return c  # NaN targets: any class; they are masked out of the loss

    def window_stats(self, final, target):
        reg, _ = self.split(final.float())
        err = (reg * self.h - target).abs()
        inside, outside = (target > 0) & (target < self.h), target >= self.h
        return torch.stack([err[inside].sum(), inside.sum(), err[outside].sum(), outside.sum()]).float()

    def window_metrics(self, t):
        inmae = t["in_error"] / max(1.0, t["in_frames"])
        outmae = t["out_error"] / max(1.0, t["out_frames"])
        return {"inMAE": inmae, "outMAE": outmae, "wMAE": (inmae + outmae) / 2}

    # -- evaluation --------------------------------------------------------------------------
    def _target(self, r) -> np.ndarray:
        return self.table(r.video)[r.frame]

    def predicted_minutes(self, outputs: np.ndarray) -> np.ndarray:
        return outputs[:, :self.k] * self.h

    def has_labels(self, results):
        return any((~np.isnan(self._target(r))).any() for r in results)

    def evaluate(self, results):
        target = np.concatenate([self._target(r) for r in results])
        pred = np.concatenate([self.predicted_minutes(r.outputs) for r in results])
        out = ant.errors(pred, target, self.h)
        out["per_instrument"] = {m: dict(zip(self.instruments, v)) for m, v in out["per_instrument"].items()}
        return {**out, "horizon_minutes": self.h, "instruments": self.instruments, "convention": CONVENTION}

    def headline(self, r):
        return (f"anticipation (h = {self.h:g} min): wMAE {r['wMAE']:.3f}, inMAE {r['inMAE']:.3f}, "
                f"outMAE {r['outMAE']:.3f}, eMAE {r['eMAE']:.3f} min")

    def columns(self, r):
        t, p = self._target(r), self.predicted_minutes(r.outputs)
        _, cls = self.split(torch.from_numpy(r.outputs))
        klass = cls.argmax(-1).numpy()
        cols = {}
        for k, name in enumerate(self.instruments):
            cols[f"anticipation_{name}_target_min"] = t[:, k]
            cols[f"anticipation_{name}_pred_min"] = p[:, k]
            cols[f"anticipation_{name}_class"] = klass[:, k]
        return cols

    def write_files(self, results, report, out_dir):
        from .. import plots

        curves = [(r.video.id, r.time, self._target(r), self.predicted_minutes(r.outputs)) for r in results]
        return [plots.anticipation_curves(curves, self.instruments, self.h, out_dir / "anticipation_curves.png")]
