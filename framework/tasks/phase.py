"""`task=phase`: one class per frame (surgical phases, or any per-frame label space: actions, steps).

Loss: cross-entropy with class weights — `median` (median-frequency balancing from the training split's
frames: w_c = median_k f_k / f_c over the classes that occur), `none`, or a list — summed over labelled frames
and averaged over the stages of multi-stage heads. The loss of a step is that sum over the frames of the
step's sequences (unlabeled frames count as zero), not PyTorch's weighted mean.
Report: framework/metrics/phase.py (the Cholec80/M2CAI16 MATLAB protocol in its three modes, per-video and
frame-pooled metrics, the confusion matrix); files: Cholec80-format prediction and ground-truth files,
phase ribbons and the confusion matrix as plots.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ConfigError
from ..metrics.phase import phase_report
from .base import Task, TaskContext, TaskError, VideoResult, as_stages

OFFSETS = ("auto", "cholec80", "m2cai16", "general")


@dataclass
class PhaseConfig:
    weight: float = 1.0  # of this task's loss in a multi-task run
    class_weights: Any = "median"  # median | none | [w_0, w_1, ...] (one per label)
    offsets: str = "auto"  # relaxation rules of the protocol: auto (7 phases: Cholec80, 8: M2CAI16, else general)

    def __post_init__(self):
        if self.weight < 0:
            raise ConfigError(f"task.phase.weight must be >= 0, got {self.weight}")
        cw = self.class_weights
        if not (cw in ("median", "none") or (isinstance(cw, (list, tuple)) and all(
                isinstance(w, (int, float)) and w >= 0 for w in cw))):
            raise ConfigError(f"task.phase.class_weights={cw!r}: median, none, or a list of weights >= 0")
        if self.offsets not in OFFSETS:
            raise ConfigError(f"task.phase.offsets={self.offsets!r}: choose one of {list(OFFSETS)}")


def median_frequency_weights(counts: np.ndarray) -> np.ndarray:
    """w_c = median(f) / f_c over the classes that occur; 0 for classes absent from training."""
    freq = counts / max(1, counts.sum())
    present = counts > 0
    w = np.zeros(len(counts))
    w[present] = np.median(freq[present]) / freq[present]
    return w


class PhaseTask(Task):
    name = "phase"
    window = ("correct", "labelled")

    def __init__(self, cfg: PhaseConfig, ctx: TaskContext):
        super().__init__(cfg, ctx)
        self.labels = list(ctx.manifest.labels)
        if not self.labels:
            raise TaskError("task phase: the manifest has no labels")
        self.out_dim = len(self.labels)
        self.class_weights = self._class_weights()

    def _class_weights(self) -> torch.Tensor | None:
        cw = self.cfg.class_weights
        if cw == "none":
            return None
        if cw != "median":
            if len(cw) != self.out_dim:
                raise TaskError(f"task.phase.class_weights has {len(cw)} weights, the data has {self.out_dim} "
                                f"labels ({', '.join(self.labels)})")
            return torch.tensor(cw, dtype=torch.float32)
        if not self.ctx.train_videos:  # inference: there is no training split, and no loss either
            return None
        from ..data.frame_info import frame_info

        info = frame_info(self.ctx.root, self.ctx.manifest, self.ctx.train_videos)
        labels = np.concatenate([i.label for i in info.values()])
        counts = np.bincount(labels[labels >= 0], minlength=self.out_dim)
        if not counts.sum():
            return None  # nothing labelled to train on; the trainer says so
        return torch.tensor(median_frequency_weights(counts), dtype=torch.float32)

    # -- training ----------------------------------------------------------------------------
    def targets(self, batch, videos) -> torch.Tensor:
        return batch.labels.masked_fill(~batch.valid, -1)

    def loss(self, stages, target):
        w = None if self.class_weights is None else self.class_weights.to(stages.device)
        return cross_entropy_sum(stages, target, w)

    def window_stats(self, final, target):
        labelled = target >= 0
        correct = (final.argmax(-1) == target) & labelled
        return torch.stack([correct.sum(), labelled.sum()]).float()

    def window_metrics(self, totals):
        return {"accuracy": totals["correct"] / max(1.0, totals["labelled"])}

    # -- evaluation --------------------------------------------------------------------------
    def has_labels(self, results):
        return any((r.label >= 0).any() for r in results)

    def evaluate(self, results):
        videos = {r.video.id: (r.label, r.outputs.argmax(-1)) for r in results}
        rate = float(np.median([rows_per_second(r) for r in results]))  # the relaxation window counts rows
        return phase_report(videos, self.labels, rate, self.cfg.offsets)

    def headline(self, r):
        o, fp = r["protocol_official"], r["frame_pooled"]
        return (f"phase: accuracy {o['accuracy']['mean']:.2f} ± {o['accuracy']['std']:.2f}, Jaccard "
                f"{o['jaccard']['mean']:.2f} (official relaxed protocol); frame-pooled accuracy {fp['accuracy']:.4f}, "
                f"macro F1 {fp['f1']:.4f} ({r['frames']} frames of {r['videos']} videos)")

    def columns(self, result):
        probs = torch.softmax(torch.from_numpy(result.outputs).float(), -1).numpy()
        names = np.array(self.labels + [""])  # −1 (unlabeled) reads as ""
        cols = {"phase_target": names[result.label], "phase_prediction": names[probs.argmax(-1)]}
        cols.update({f"phase_prob_{name}": probs[:, i] for i, name in enumerate(self.labels)})
        return cols

    def write_files(self, results, report, out_dir: Path):
        from .. import plots
        from ..metrics.phase_files import write_phase_rows

        written = []
        for kind in ("pred", "gt"):
            (out_dir / "cholec80" / kind).mkdir(parents=True, exist_ok=True)
        for r in results:
            frames = source_frames(r)
            pred = out_dir / "cholec80" / "pred" / f"{r.video.id}-phase.txt"
            write_phase_rows(pred, frames, r.outputs.argmax(-1), self.labels)
            written.append(pred)
            if (r.label >= 0).all():
                gt = out_dir / "cholec80" / "gt" / f"{r.video.id}-phase.txt"
                write_phase_rows(gt, frames, r.label, self.labels)
                written.append(gt)
        written.append(plots.phase_ribbons(results, self.labels, out_dir / "phase_ribbons.png"))
        if "confusion" in report:
            written.append(plots.confusion_matrix(report["confusion"], out_dir / "phase_confusion.png"))
        return written


def cross_entropy_sum(outputs: torch.Tensor, target: torch.Tensor, weight=None) -> torch.Tensor:
    """Σ over the frames with target >= 0 of the (weighted) cross-entropy, averaged over the stages of
    outputs [B, T, C] or [B, T, S, C]."""
    stages = as_stages(outputs).float()
    flat = target.flatten()
    per_stage = [F.cross_entropy(stages[:, :, s].flatten(0, 1), flat, weight=weight, ignore_index=-1,
                                 reduction="sum") for s in range(stages.shape[2])]
    return torch.stack(per_stage).mean()


def rows_per_second(r: VideoResult) -> float:
    """The rate of a video's scored rows: its sampled frame rate, over the model's temporal stride."""
    return 1.0 / float(np.median(np.diff(r.time))) if len(r.time) > 1 else r.video.fps


def source_frames(r: VideoResult) -> np.ndarray:
    """Frame indices of the source video (what the Cholec80 `Frame` column counts), from each frame's time."""
    fps = r.video.source_fps
    return np.rint(r.time * fps).astype(np.int64) if fps > 0 else r.frame
