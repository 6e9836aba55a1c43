"""`task=tools`: multi-label presence of surgical instruments (or any per-frame set of labels).

Targets: the manifest's tool presence runs (bit i = Manifest.tools[i]); a video without a tool annotation is
unlabeled for this task. Loss: binary cross-entropy per tool and frame, averaged over the tools and summed
over labelled frames, optionally with `pos_weight: balanced` (negatives / positives per tool in the training
split). Report: per-tool AP and mAP (framework/metrics/ranking.py). Files: presence ribbons.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ConfigError
from ..metrics.ranking import mean_ap
from .base import Task, TaskContext, TaskError, VideoCache, per_frame_targets

AP_CONVENTION = ("AP: scikit-learn average_precision_score per tool over all evaluated frames of all videos "
                 "(step-wise, not interpolated; tied scores one threshold); mAP: mean over tools with a positive "
                 "frame (tools without one are null)")


@dataclass
class ToolsConfig:
    weight: float = 1.0
    pos_weight: Any = "none"  # none | balanced | [w per tool]

    def __post_init__(self):
        if self.weight < 0:
            raise ConfigError(f"task.tools.weight must be >= 0, got {self.weight}")
        pw = self.pos_weight
        if not (pw in ("none", "balanced") or (isinstance(pw, (list, tuple)) and all(
                isinstance(w, (int, float)) and w > 0 for w in pw))):
            raise ConfigError(f"task.tools.pos_weight={pw!r}: none, balanced, or a list of weights > 0")


def tool_presence(manifest, video) -> np.ndarray:
    """[frames, tools] int8: 1 present, 0 absent, −1 where the video has no tool annotation."""
    if not video.tools:
        return np.full((video.num_frames, len(manifest.tools)), -1, np.int8)
    return manifest.tool_targets(video).astype(np.int8)


class ToolsTask(Task):
    name = "tools"
    window = ("correct", "labelled")

    def __init__(self, cfg: ToolsConfig, ctx: TaskContext):
        super().__init__(cfg, ctx)
        self.names = list(ctx.manifest.tools)
        if not self.names:
            raise TaskError("task tools: the manifest lists no tools (prepare the data with --tools ...)")
        self.out_dim = len(self.names)
        self.table = VideoCache(lambda v: tool_presence(ctx.manifest, v))
        self.pos_weight = self._pos_weight()

    def _pos_weight(self) -> torch.Tensor | None:
        pw = self.cfg.pos_weight
        if pw == "none":
            return None
        if pw != "balanced":
            if len(pw) != self.out_dim:
                raise TaskError(f"task.tools.pos_weight has {len(pw)} weights for {self.out_dim} tools")
            return torch.tensor(pw, dtype=torch.float32)
        if not self.ctx.train_videos:  # inference: no training split, no loss
            return None
        rows = np.concatenate([self.table(v) for v in self.ctx.train_videos])
        pos, neg = (rows == 1).sum(0), (rows == 0).sum(0)
        return torch.tensor(np.where(pos > 0, neg / np.maximum(pos, 1), 1.0), dtype=torch.float32)

    def targets(self, batch, videos):
        return per_frame_targets(batch, videos, self.table, -1, np.int8)

    def loss(self, stages, target):
        labelled = (target >= 0).unsqueeze(2)  # [B, T, 1, K]
        y = target.clamp(min=0).float().unsqueeze(2).expand_as(stages)
        pw = None if self.pos_weight is None else self.pos_weight.to(stages.device)
        bce = F.binary_cross_entropy_with_logits(stages.float(), y, pos_weight=pw, reduction="none")
        return (bce * labelled).sum() / (stages.shape[2] * self.out_dim)

    def window_stats(self, final, target):
        labelled = target >= 0
        correct = ((final > 0) == (target == 1)) & labelled
        return torch.stack([correct.sum(), labelled.sum()]).float()

    def window_metrics(self, totals):
        return {"accuracy": totals["correct"] / max(1.0, totals["labelled"])}

    # -- evaluation --------------------------------------------------------------------------
    def _targets(self, r) -> np.ndarray:
        return self.table(r.video)[r.frame]

    def has_labels(self, results):
        return any((self._targets(r) >= 0).any() for r in results)

    def evaluate(self, results):
        targets = np.concatenate([self._targets(r) for r in results])
        scores = np.concatenate([r.outputs for r in results])
        return {**mean_ap(targets, scores, self.names), "convention": AP_CONVENTION,
                "frames": int((targets >= 0).all(1).sum())}

    def headline(self, r):
        aps = ", ".join(f"{k} {v:.3f}" for k, v in r["AP"].items() if v == v)
        return f"tools: mAP {r['mAP']:.4f} ({aps})"

    def columns(self, r):
        probs = 1 / (1 + np.exp(-r.outputs.astype(np.float64)))
        t = self._targets(r)
        cols = {}
        for k, name in enumerate(self.names):
            cols[f"tools_{name}_target"] = t[:, k]
            cols[f"tools_{name}_prob"] = probs[:, k]
        return cols

    def write_files(self, results, report, out_dir):
        from .. import plots

        curves = [(r.video.id, r.time, self._targets(r), 1 / (1 + np.exp(-r.outputs))) for r in results]
        return [plots.presence_ribbons(curves, self.names, out_dir / "tools_presence.png")]
