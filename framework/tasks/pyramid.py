"""The points of the localization head's pyramid: where they are, what each must predict (ActionFormer's label
assignment), the losses, and decoding into segments (reference/metrics.md §4.2–4.3).

Geometry. A sequence of n frames (spaced r frames of the video apart, the first at frame f0) is cut into
L = ⌈n / stride⌉ snippets: snippet t holds frames [t·stride, t·stride + len). The head pads L to a multiple of
2^(levels−1); level l has points j = 0 … Lp/2^l − 1 at grid position g = j·2^l (snippet units). A grid position
is the centre of its snippet's span: video frame f0 + r·(g·stride + len/2) (ActionFormer's
(g·feat_stride + ½·num_frames)/fps). A point is valid when its snippet's first frame is real, and every level
takes level 0's validity at its own points (as the masked convolutions do).

Assignment (per point, per window): center sampling (radius 1.5 strides around the segment's centre, inside the
segment) and the level's regression range on max(left, right) distance in grid units; among candidates the
shortest segment wins (those within 1e-3 of it set their class bits too); targets (g − a, b − g) / 2^l.
Segments are those of the window, cut to it; one with less than `truncate` of its length inside is dropped
(ActionFormer's trunc_thresh).
Losses: sigmoid focal loss (α, γ) summed over valid points × classes; 1-D DIoU (1 − IoU + (centre distance /
enclosing length)²) summed over positives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# ActionFormer's regression ranges (grid units of level 0, on max(left, right)), level by level
RANGES = ((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000))


@dataclass(frozen=True)
class Geometry:
    levels: int
    snippet_len: int  # frames (of the sequence as the head saw it)
    snippet_stride: int
    ranges: tuple = RANGES

    def snippets(self, frames: int) -> int:
        return -(-frames // self.snippet_stride)

    def padded(self, frames: int) -> int:
        unit = 2 ** (self.levels - 1)
        return -(-self.snippets(frames) // unit) * unit

    def num_points(self, frames: int) -> int:
        return sum(self.padded(frames) >> level for level in range(self.levels))

    def level_ranges(self) -> list[tuple[float, float]]:
        """The first `levels` ranges; the last level takes everything longer."""
        ranges = [tuple(map(float, r)) for r in self.ranges[:self.levels]]
        return ranges[:-1] + [(ranges[-1][0], float(max(ranges[-1][1], 10000)))]

    def points(self, frames: int) -> dict[str, np.ndarray]:
        """Per point: grid position g, level, stride 2^level, its regression range, index into level 0."""
        Lp, ranges = self.padded(frames), self.level_ranges()
        parts = []
        for level in range(self.levels):
            j = np.arange(Lp >> level)
            s = 2 ** level
            parts.append(np.stack([j * s, np.full_like(j, level), np.full_like(j, s)], 1))
        p = np.concatenate(parts).astype(np.float64)
        lo = np.array([ranges[int(lv)][0] for lv in p[:, 1]])
        hi = np.array([ranges[int(lv)][1] for lv in p[:, 1]])
        return {"grid": p[:, 0], "level": p[:, 1].astype(np.int64), "stride": p[:, 2], "lo": lo, "hi": hi}

    def point_valid(self, first_frame_valid: np.ndarray) -> np.ndarray:
        """[n] validity of the sequence's frames → [P] validity of the points."""
        L, Lp = self.snippets(len(first_frame_valid)), self.padded(len(first_frame_valid))
        v0 = np.zeros(Lp, bool)
        v0[:L] = first_frame_valid[::self.snippet_stride][:L]
        return np.concatenate([v0[::2 ** level] for level in range(self.levels)])

    def to_frames(self, grid, f0: float, r: float):
        """Grid positions → video frames (fractional): the centre of the snippet span."""
        return f0 + r * (np.asarray(grid) * self.snippet_stride + self.snippet_len / 2)

    def to_grid(self, frames, f0: float, r: float):
        return ((np.asarray(frames, np.float64) - f0) / r - self.snippet_len / 2) / self.snippet_stride


def window_segments(segments: list, fps: float, f0: float, end: float, truncate: float) -> np.ndarray:
    """A video's segments [[start_s, end_s, label]] → [[start_f, end_f, label]] in video frames, cut to the
    window [f0, end) of frames; those with less than `truncate` of their length inside are dropped."""
    out = []
    for s, e, label in segments:
        a, b = s * fps, e * fps
        lo, hi = max(a, f0), min(b, end)
        if b > a and hi > lo and (hi - lo) / (b - a) >= truncate:
            out.append((lo, hi, label))
    return np.asarray(out, np.float64).reshape(-1, 3)


def assign(points: dict, segments_grid: np.ndarray, labels: np.ndarray, classes: int,
           radius: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """ActionFormer's label_points_single_video. segments_grid [G, 2] in grid units, labels [G] in 0..C−1 →
    (class targets [P, C] multi-hot, regression targets [P, 2] in units of each point's stride)."""
    g, stride = points["grid"][:, None], points["stride"][:, None]
    P = len(points["grid"])
    if not len(segments_grid):
        return np.zeros((P, classes), np.float32), np.zeros((P, 2), np.float32)
    a, b = segments_grid[None, :, 0], segments_grid[None, :, 1]
    left, right = g - a, b - g
    centre = 0.5 * (a + b)
    inside = np.minimum(g - np.maximum(centre - radius * stride, a), np.minimum(centre + radius * stride, b) - g) > 0
    reach = np.maximum(left, right)
    in_range = (reach >= points["lo"][:, None]) & (reach <= points["hi"][:, None])
    lengths = np.where(inside & in_range, (b - a).repeat(P, 0), np.inf)
    best = lengths.argmin(1)
    shortest = lengths.min(1, keepdims=True)
    winners = (lengths <= shortest + 1e-3) & np.isfinite(lengths)
    cls = np.minimum(winners.astype(np.float32) @ np.eye(classes, dtype=np.float32)[labels.astype(np.int64)], 1.0)
    reg = np.stack([left[np.arange(P), best], right[np.arange(P), best]], 1) / stride
    return cls, reg.astype(np.float32)


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Summed; torchvision's / ActionFormer's formula."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.sum()


def diou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """ActionFormer's ctr_diou_loss_1d on (left, right) distances [N, 2], summed."""
    lp, rp, lg, rg = pred[:, 0], pred[:, 1], target[:, 0], target[:, 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = (lp + rp) + (lg + rg) - inter
    iou = inter / union.clamp(min=eps)
    enclosing = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    rho = 0.5 * (rp - lp - rg + lg)
    return (1.0 - iou + torch.square(rho / enclosing.clamp(min=eps))).sum()


def decode(outputs: np.ndarray, geo: Geometry, frames: int, f0: float, r: float, pre_nms_thresh: float = 0.001,
           pre_nms_topk: int = 2000, duration_thresh: float = 0.05):
    """One sequence's outputs [P, C + 2] → candidate (segments in video frames [K, 2], scores [K], labels [K])
    before NMS: per level the sigmoid scores of valid points above the threshold, the top-k of each level,
    segments g − d_l·2^l … g + d_r·2^l longer than duration_thresh grid units."""
    pts = geo.points(frames)
    valid = geo.point_valid(np.ones(frames, bool))
    C = outputs.shape[1] - 2
    probs = 1 / (1 + np.exp(-outputs[:, :C].astype(np.float64))) * valid[:, None]
    segs, scores, labels = [], [], []
    for level in range(geo.levels):
        rows = np.flatnonzero(pts["level"] == level)
        flat = probs[rows].ravel()
        keep = np.flatnonzero(flat > pre_nms_thresh)
        keep = keep[np.argsort(-flat[keep], kind="stable")[:pre_nms_topk]]
        point, label = rows[keep // C], keep % C
        g, s = pts["grid"][point], pts["stride"][point]
        left, right = g - outputs[point, C] * s, g + outputs[point, C + 1] * s
        long_enough = right - left > duration_thresh
        segs.append(np.stack([left, right], 1)[long_enough])
        scores.append(flat[keep][long_enough])
        labels.append(label[long_enough])
    segs = np.concatenate(segs) if segs else np.zeros((0, 2))
    return geo.to_frames(segs, f0, r), np.concatenate(scores), np.concatenate(labels)


def prior_logit(p: float = 0.01) -> float:
    return -math.log((1 - p) / p)
