"""Non-maximum suppression of 1-D segments as ActionFormer runs it (libs/utils/nms.py and its C++ ops, ported
from mmcv's nms.cpp): hard NMS, and Soft-NMS with Gaussian (mmcv method 2), linear (1) or hard (0) decay.
Pure numpy in float32, as the C++ ops compute.

- Segment "areas" are end − start + 1e-6; overlap = intersection / (area_i + area_j − intersection).
- Hard NMS: drop scores <= min_score first (when min_score > 0), visit by descending score, suppress every
  later segment with overlap >= iou_threshold.
- Soft-NMS: repeatedly take the highest remaining score (the first one on ties), decay every other remaining
  score by exp(−overlap² / sigma) (Gaussian; the iou_threshold plays no part), or by 1 − overlap above the
  threshold (linear), and discard a segment as soon as its score falls below min_score — by moving the last
  remaining segment into its place, exactly as the C++ loop does, which decides which of tied scores comes first.
- `batched_nms`: per class (multiclass, ActionFormer's default) or over all classes, each call capped at
  max_segments, then everything re-sorted by score and cut to max_segments.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32
METHODS = {"hard": 0, "linear": 1, "gaussian": 2}


def overlaps(x1: np.ndarray, x2: np.ndarray, area: np.ndarray, i: int, rest) -> np.ndarray:
    inter = np.maximum(F32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
    return inter / (area[i] + area[rest] - inter)


def nms(segments: np.ndarray, scores: np.ndarray, iou_threshold: float, min_score: float = 0.0,
        max_num: int = 0) -> np.ndarray:
    """Indices of the kept segments, by descending score."""
    scores = np.asarray(scores, F32)
    candidates = np.flatnonzero(scores > min_score) if min_score > 0 else np.arange(len(scores))
    segs = np.asarray(segments, F32).reshape(-1, 2)[candidates]
    x1, x2 = segs[:, 0], segs[:, 1]
    area = x2 - x1 + F32(1e-6)
    order = np.argsort(-scores[candidates], kind="stable")
    alive = np.ones(len(order), bool)
    for a in range(len(order)):
        if alive[a]:
            later = order[a + 1:]
            alive[a + 1:] &= overlaps(x1, x2, area, order[a], later) < F32(iou_threshold)
    kept = candidates[order[alive]]
    return kept[:max_num] if max_num > 0 else kept


def soft_nms(segments: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.1, sigma: float = 0.5,
             min_score: float = 0.001, method: str = "gaussian", max_num: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the kept segments in the order they were taken, their decayed scores)."""
    code = METHODS[method]
    segs = np.asarray(segments, F32).reshape(-1, 2)
    x1, x2 = segs[:, 0].copy(), segs[:, 1].copy()
    sc = np.asarray(scores, F32).copy()
    area = x2 - x1 + F32(1e-6)
    index = np.arange(len(sc))
    arrays = (x1, x2, sc, area, index)
    n, i = len(sc), 0
    while i < n:
        m = i + int(np.argmax(sc[i:n]))  # argmax: the first of tied maxima, like the C++ strict `<`
        for a in arrays:
            a[i], a[m] = a[m], a[i]
        rest = np.arange(i + 1, n)
        ovr = overlaps(x1, x2, area, i, rest)
        if code == 2:
            weight = np.exp(-(ovr * ovr) / F32(sigma))
        elif code == 1:
            weight = np.where(ovr >= F32(iou_threshold), F32(1) - ovr, F32(1))
        else:
            weight = np.where(ovr >= F32(iou_threshold), F32(0), F32(1))
        sc[rest] *= weight.astype(F32)
        n = _discard(arrays, rest, sc[rest] < F32(min_score), n)
        i += 1
    kept = slice(0, min(n, max_num) if max_num > 0 else n)
    return index[kept].copy(), sc[kept].copy()


def _discard(arrays, rest: np.ndarray, drop: np.ndarray, n: int) -> int:
    """The C++ loop's removal: scanning forward, each discarded position is refilled from the end of the
    remaining segments. Equivalently: the holes left of the new end take the kept segments right of it,
    the rightmost first."""
    if not drop.any():
        return n
    new_n = n - int(drop.sum())
    holes = rest[drop & (rest < new_n)]
    donors = rest[~drop & (rest >= new_n)][::-1]
    for a in arrays:
        a[holes] = a[donors]
    return new_n


def batched_nms(segments: np.ndarray, scores: np.ndarray, labels: np.ndarray, method: str = "soft",
                iou_threshold: float = 0.1, sigma: float = 0.5, min_score: float = 0.001, max_segments: int = 200,
                multiclass: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ActionFormer's batched_nms (without segment voting): (segments [K, 2], scores [K], labels [K]) by
    descending score, K <= max_segments. method: soft (Gaussian Soft-NMS) | hard | none."""
    segments = np.asarray(segments, F32).reshape(-1, 2)
    scores, labels = np.asarray(scores, F32), np.asarray(labels)
    if method == "none" or not len(scores):
        keep = np.argsort(-scores, kind="stable")[:max_segments]
        return segments[keep], scores[keep], labels[keep]
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if multiclass else [np.arange(len(scores))]
    segs, scs, labs = [], [], []
    for idx in groups:
        if method == "soft":
            kept, decayed = soft_nms(segments[idx], scores[idx], iou_threshold, sigma, min_score, "gaussian",
                                     max_segments)
        else:
            kept = nms(segments[idx], scores[idx], iou_threshold, min_score, max_segments)
            decayed = scores[idx][kept]
        segs.append(segments[idx][kept])
        scs.append(decayed)
        labs.append(labels[idx][kept])
    segs, scs, labs = np.concatenate(segs), np.concatenate(scs), np.concatenate(labs)
    order = np.argsort(-scs, kind="stable")[:max_segments]
    return segs[order], scs[order], labs[order]
