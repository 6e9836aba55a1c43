"""`task=clip`: one label per video clip (Kinetics / SSv2 style), trained on random clips (`data.sampling=clips`)
and tested with K temporal × S spatial views per video (framework/metrics/clips.py).

The clip's score is the mean of the head's outputs over the clip's time steps: with the `linear` head and a 2D
backbone that is TSN's average of per-frame predictions (equal to a linear layer on the averaged features);
with a 3D backbone it averages its few time steps. Loss: cross-entropy of that score (label smoothing
optional), each clip weighted by its frames (clips shorter than data.seq_len, from short videos, weigh less).
Testing: `views` clips per video starting at ⌊(n − span)·i/views⌋, each in `crops` spatial crops of side
`test_crop` (default: the frames' short side) at the left/centre/right of the long side (top/middle/bottom
for portrait frames), aggregated per video by `aggregation`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ConfigError
from ..metrics.clips import AGGREGATIONS, aggregate, clip_report, softmax
from .base import Task, TaskContext, TaskError


@dataclass
class ClipConfig:
    weight: float = 1.0
    label_smoothing: float = 0.0
    views: int = 10  # temporal clips per test video
    crops: int = 3  # spatial crops per clip: 1 (centre) or 3 (left, centre, right)
    test_crop: Optional[int] = None  # side of the test crops; default: the frames' short side
    aggregation: str = "sum"  # sum | mean (of softmax probabilities) | logits | max

    def __post_init__(self):
        if self.weight < 0 or not 0 <= self.label_smoothing < 1:
            raise ConfigError("task.clip.weight must be >= 0 and task.clip.label_smoothing in [0, 1)")
        if self.views < 1 or self.crops not in (1, 3):
            raise ConfigError(f"task.clip.views must be >= 1 and task.clip.crops 1 or 3, got {self.views}, "
                              f"{self.crops}")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"task.clip.aggregation={self.aggregation!r}: choose one of {list(AGGREGATIONS)}")
        if self.test_crop is not None and self.test_crop < 8:
            raise ConfigError(f"task.clip.test_crop must be >= 8 pixels, got {self.test_crop}")


class ClipTask(Task):
    name = "clip"
    window = ("correct", "labelled")
    sampling = "views"  # its test split is read as views of clips (framework/evaluate.py)
    per_frame = False

    def __init__(self, cfg: ClipConfig, ctx: TaskContext):
        super().__init__(cfg, ctx)
        self.labels = list(ctx.manifest.labels)
        if not self.labels:
            raise TaskError("task clip: the manifest has no labels (prepare the data with --clips ...)")
        self.out_dim = len(self.labels)

    def targets(self, batch, videos) -> torch.Tensor:
        """[B, 2]: each clip's label (the frames of a clip share it; −1 padding or unlabeled) and its frames."""
        label = torch.where(batch.valid[:, 0], batch.labels[:, 0], torch.full_like(batch.labels[:, 0], -1))
        return torch.stack([label, batch.valid.sum(1)], dim=1)

    def loss(self, stages, target):
        scores = stages[:, :, -1].float().mean(1)  # stages [B, T', S, C]
        label, frames = target[:, 0], target[:, 1].float()
        ce = F.cross_entropy(scores, label.clamp(min=0), reduction="none", label_smoothing=self.cfg.label_smoothing)
        return (ce * frames * (label >= 0)).sum()

    def window_stats(self, final, target):
        label = target[:, 0]
        labelled = label >= 0
        correct = (final.float().mean(1).argmax(-1) == label) & labelled
        return torch.stack([correct.sum(), labelled.sum()]).float()

    def window_metrics(self, totals):
        return {"accuracy": totals["correct"] / max(1.0, totals["labelled"])}

    # -- evaluation: results hold one row per view, outputs [views·crops, C] --------------------
    def video_score(self, r) -> np.ndarray:
        return aggregate(r.outputs, self.cfg.aggregation)

    def has_labels(self, results):
        return any(r.video.clip_label >= 0 or (r.label >= 0).any() for r in results)

    def _label(self, r) -> int:
        return int(r.video.clip_label) if r.video.clip_label >= 0 else int(r.label.max(initial=-1))

    def evaluate(self, results):
        scores = np.stack([self.video_score(r) for r in results])
        labels = np.array([self._label(r) for r in results])
        from ..metrics.classification import confusion

        keep = labels >= 0
        cm = confusion(labels[keep], scores[keep].argmax(1), self.out_dim)
        return {**clip_report(scores, labels, len(results[0].outputs), self.cfg.aggregation),
                "views_temporal": self.cfg.views, "crops": self.cfg.crops,
                "confusion": {"labels": self.labels, "rows_true_columns_predicted": cm.tolist()}}

    def write_files(self, results, report, out_dir):
        from .. import plots

        return [plots.confusion_matrix(report["confusion"], out_dir / "clip_confusion.png")]

    def headline(self, r):
        return (f"clip: top-1 {r['top1']:.4f}, top-5 {r['top5']:.4f}, mean class accuracy "
                f"{r['mean_class_accuracy']:.4f} ({r['videos']} videos × {r['views']} views, {self.cfg.aggregation})")

    def columns(self, r):
        score = self.video_score(r)
        probs = score / score.sum() if self.cfg.aggregation != "logits" else softmax(score)
        top5 = np.argsort(-score, kind="stable")[:5]
        names = self.labels
        label = self._label(r)
        cols = {"clip_target": [names[label] if label >= 0 else ""], "clip_prediction": [names[int(top5[0])]],
                "clip_top5": [" ".join(names[int(i)] for i in top5)]}
        cols.update({f"clip_prob_{n}": [float(probs[i])] for i, n in enumerate(names)})
        return {k: np.asarray(v) for k, v in cols.items()}
