"""`task=localization`: temporal action localization with an ActionFormer-style head (`model.head=actionformer`,
framework/models/actionformer.py) over snippet features computed inside the training graph.

Training reads windows of frames (`data.sampling=clips`: random windows of `data.seq_len` × `trainer.sp` frames,
a video shorter than that as one padded window; or `stream`: consecutive windows) and the head sees each
window whole (at sp > 1 through `trainer.handoff=gather`). Targets are per frame — (video, frame index, valid)
— so the sequence-parallel ranks' parts concatenate along time into the whole window's; the point targets are
assigned from them inside the loss (framework/tasks/pyramid.py: ActionFormer's center sampling, regression
ranges, focal + DIoU losses). Evaluation streams each video's features chunk by chunk and runs the head once
over the whole video (`sampling = "videos"`, framework/evaluate.py), then decodes (score threshold, top-k per
level, Soft-NMS or NMS, at most `max_segments` per video, seconds from the snippet geometry) and scores with
ActivityNet's evaluator (framework/metrics/detection.py) at both threshold conventions.
Files: the ActivityNet results JSON and the ground truth JSON of the split (score them with `vt-score
detection`), and a plot of ground truth vs detections per video.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..config import ConfigError
from ..metrics.detection import Detection, detection_report, write_ground_truth, write_results
from ..metrics.nms import batched_nms
from .base import Task, TaskContext, TaskError
from .pyramid import RANGES, Geometry, assign, decode, diou_loss, sigmoid_focal_loss, window_segments

SUBSET_NAMES = {"train": "training", "val": "validation", "test": "testing"}  # ActivityNet's subset names


@dataclass
class LocalizationConfig:
    weight: float = 1.0
    center_radius: float = 1.5  # center sampling, in strides of each level
    regression_ranges: Any = field(default_factory=lambda: [list(r) for r in RANGES])  # per level, grid units
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    reg_weight: float = 1.0  # total = focal + reg_weight · DIoU
    label_smoothing: float = 0.0
    truncate: float = 0.5  # a segment cut by the window edge counts if this fraction of it is inside
    # decoding (ActionFormer's THUMOS defaults)
    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 2000  # per pyramid level
    duration_thresh: float = 0.05  # grid units
    nms: str = "soft"  # soft (Gaussian Soft-NMS) | hard | none
    iou_threshold: float = 0.1
    sigma: float = 0.5
    min_score: float = 0.001
    max_segments: int = 200  # per video
    multiclass_nms: bool = True

    def __post_init__(self):
        if self.weight < 0 or self.reg_weight < 0 or self.center_radius <= 0:
            raise ConfigError("task.localization.weight and reg_weight must be >= 0, center_radius > 0")
        if self.nms not in ("soft", "hard", "none"):
            raise ConfigError(f"task.localization.nms={self.nms!r}: soft, hard or none")
        if not 0 <= self.label_smoothing < 1 or not 0 < self.truncate <= 1:
            raise ConfigError("task.localization.label_smoothing must be in [0, 1) and truncate in (0, 1]")
        if self.max_segments < 1 or self.pre_nms_topk < 1 or self.sigma <= 0:
            raise ConfigError("task.localization.max_segments and pre_nms_topk must be >= 1, sigma > 0")
        r = self.regression_ranges
        if not (isinstance(r, (list, tuple)) and r and all(isinstance(x, (list, tuple)) and len(x) == 2
                                                            and 0 <= x[0] < x[1] for x in r)):
            raise ConfigError(f"task.localization.regression_ranges={r!r}: a list of [lo, hi] per level, lo < hi")


class LocalizationTask(Task):
    name = "localization"
    window = ("focal", "diou", "positives")
    sampling = "videos"  # evaluated on whole videos: features streamed, the head once per video
    per_frame = False  # its targets stay per frame under a strided backbone (the snippets are in frames)

    def __init__(self, cfg: LocalizationConfig, ctx: TaskContext):
        super().__init__(cfg, ctx)
        labels = list(ctx.manifest.labels)
        if not labels or labels[0] != "background":
            raise TaskError("task localization: the manifest has no segment labels (prepare the data with "
                            "--segments segments.json; its label space starts with 'background')")
        self.labels = labels
        self.classes = labels[1:]  # class k of the head = label k + 1
        if not self.classes:
            raise TaskError("task localization: the segments name no action class")
        self.out_dim = len(self.classes) + 2
        m = ctx.model
        if m is None or m.head != "actionformer":
            raise TaskError("task localization needs model.head=actionformer")
        self.geometry = Geometry(m.levels, m.snippet_len, m.snippet_stride,
                                 tuple(tuple(x) for x in cfg.regression_ranges))
        if len(cfg.regression_ranges) < m.levels:
            raise TaskError(f"task.localization.regression_ranges has {len(cfg.regression_ranges)} levels, "
                            f"model.levels={m.levels}")
        self.videos: list = list(ctx.train_videos)
        self._decoded: dict = {}

    # -- training ----------------------------------------------------------------------------
    def targets(self, batch, videos) -> torch.Tensor:
        """[B, T, 3] int64 per frame: (video index into `videos`, frame index in the video, valid)."""
        self.videos = videos
        video = batch.video[:, None].expand_as(batch.frame)
        return torch.stack([video, batch.frame, batch.valid.long()], -1)

    def window_targets(self, rows: np.ndarray):
        """One lane's rows [n, 3] (the whole window) → (point class targets [P, C], regression [P, 2], valid [P])
        or None for a padding lane."""
        valid = rows[:, 2] > 0
        if not valid.any():
            return None
        video = self.videos[int(rows[valid][0, 0])]
        f0 = float(rows[0, 1])
        r = float(rows[1, 1] - rows[0, 1]) if len(rows) > 1 and valid[1] else 1.0
        geo = self.geometry
        segs = window_segments(video.segments, video.fps, f0, f0 + r * valid.sum(), self.cfg.truncate)
        pts = geo.points(len(rows))
        grid = geo.to_grid(segs[:, :2], f0, r)
        cls, reg = assign(pts, grid, segs[:, 2].astype(np.int64) - 1, len(self.classes), self.cfg.center_radius)
        return cls, reg, geo.point_valid(valid)

    def _terms(self, outputs: torch.Tensor, target: torch.Tensor):
        """Σ focal over valid points, Σ DIoU over positives, number of positives (outputs [B, P, C + 2])."""
        C = len(self.classes)
        rows = target.cpu().numpy()
        # attached to the graph: a batch of padding lanes only (a rank past the end of the data) backpropagates
        # a zero instead of handing the engine a loss without a gradient
        focal = outputs.float().sum() * 0.0
        diou, positives = focal.clone(), 0
        for b in range(outputs.shape[0]):
            t = self.window_targets(rows[b])
            if t is None:
                continue
            cls, reg, valid = (torch.from_numpy(x).to(outputs.device) for x in t)
            ls = self.cfg.label_smoothing
            goal = cls[valid] * (1 - ls) + ls / (C + 1)
            focal = focal + sigmoid_focal_loss(outputs[b, valid, :C].float(), goal, self.cfg.focal_alpha,
                                               self.cfg.focal_gamma)
            pos = valid & (cls.sum(1) > 0)
            diou = diou + diou_loss(outputs[b, pos, C:].float(), reg[pos])
            positives += int(pos.sum())
        return focal, diou, positives

    def loss(self, stages, target):
        focal, diou, _ = self._terms(stages[:, :, -1], target)
        return focal + self.cfg.reg_weight * diou

    def window_stats(self, final, target):
        focal, diou, positives = self._terms(final, target)
        return torch.stack([focal.detach(), diou.detach(), torch.tensor(float(positives), device=focal.device)])

    def window_metrics(self, totals):
        n = max(1.0, totals["positives"])  # per positive point, as ActionFormer normalises its losses
        return {"focal_per_positive": totals["focal"] / n, "diou_per_positive": totals["diou"] / n}

    # -- evaluation: results hold one video each, outputs [P, C + 2] -----------------------------
    def has_labels(self, results):
        return any(r.video.segments for r in results)

    def detections(self, r) -> list[Detection]:
        """Decoded detections of one video, in seconds (cached: the report, the table and the files share them)."""
        key = (r.video.id, hashlib.blake2b(np.ascontiguousarray(r.outputs).tobytes(), digest_size=16).digest())
        if key not in self._decoded:
            c = self.cfg
            segs, scores, labels = decode(r.outputs, self.geometry, len(r.frame), 0.0, 1.0, c.pre_nms_thresh,
                                          c.pre_nms_topk, c.duration_thresh)
            segs, scores, labels = batched_nms(segs, scores, labels, c.nms, c.iou_threshold, c.sigma, c.min_score,
                                               c.max_segments, c.multiclass_nms)
            duration = r.video.duration or r.video.num_frames / r.video.fps
            seconds = np.clip(segs / r.video.fps, 0.0, duration)
            self._decoded[key] = [Detection(r.video.id, self.classes[int(k)], float(s), float(e), float(p))
                                  for (s, e), p, k in zip(seconds, scores, labels)]
        return self._decoded[key]

    def ground_truth(self, results) -> dict[str, list[tuple[float, float, str]]]:
        return {r.video.id: [(float(s), float(e), self.labels[int(k)]) for s, e, k in r.video.segments]
                for r in results}

    def evaluate(self, results):
        self._decoded = {}
        detections = [d for r in results for d in self.detections(r)]
        report = detection_report(self.ground_truth(results), detections)
        report.update(videos=len(results), snippet_frames=[self.geometry.snippet_len, self.geometry.snippet_stride],
                      decoding={k: getattr(self.cfg, k) for k in ("pre_nms_thresh", "pre_nms_topk", "nms",
                                                                   "iou_threshold", "sigma", "min_score",
                                                                   "max_segments", "multiclass_nms")})
        subset = SUBSET_NAMES.get(results[0].video.split, results[0].video.split)
        report["score_with"] = ("vt-score detection localization_results.json localization_gt.json "
                                f"--subset {subset}")
        return report

    def headline(self, r):
        a, t = r["anet"], r["thumos"]
        return (f"localization: average mAP {a['average_mAP']:.4f} (tIoU 0.5:0.05:0.95; "
                f"mAP@0.5 {a['mAP']['0.50']:.4f}), "
                f"THUMOS average mAP {t['average_mAP']:.4f} (tIoU 0.3:0.1:0.7) ({r['videos']} videos, "
                f"{r['detections']} detections, {r['ground_truth']} segments)")

    def columns(self, r):
        dets = self.detections(r)
        return {"localization_label": np.array([d.label for d in dets], dtype=object),
                "localization_start": np.array([d.start for d in dets]),
                "localization_end": np.array([d.end for d in dets]),
                "localization_score": np.array([d.score for d in dets])}

    def write_files(self, results, report, out_dir):
        from .. import plots

        detections = [d for r in results for d in self.detections(r)]
        subset = SUBSET_NAMES.get(results[0].video.split, results[0].video.split)
        return [write_results(out_dir / "localization_results.json", detections),
                write_ground_truth(out_dir / "localization_gt.json", self.ground_truth(results), subset,
                                   {r.video.id: r.video.duration for r in results}),
                plots.segments(results, self.ground_truth(results), detections, self.classes,
                               out_dir / "localization_segments.png")]
