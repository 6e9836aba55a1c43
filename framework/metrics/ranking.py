"""Average precision for multi-label presence (surgical tool presence).

AP is scikit-learn's `average_precision_score`: frames sorted by descending score, tied scores form one
threshold, AP = Σ_k (R_k − R_{k−1}) · P_k over the distinct thresholds (a step function, not interpolated).
mAP is the mean over the labels that have at least one positive frame; a label without any positive is
reported as NaN and left out (its AP is undefined).
"""
from __future__ import annotations

import numpy as np


def average_precision(target: np.ndarray, score: np.ndarray) -> float:
    """target: 0/1 per frame (−1: unlabeled, dropped); score: any real, higher = more likely present."""
    target, score = np.asarray(target), np.asarray(score, np.float64)
    keep = target >= 0
    target, score = target[keep], score[keep]
    positives = int(target.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-score, kind="stable")
    target, score = target[order], score[order]
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # the last frame of each tied group
    tp = np.cumsum(target)[last]
    precision = tp / (last + 1)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_ap(targets: np.ndarray, scores: np.ndarray, names: list[str]) -> dict:
    """targets, scores: [frames, labels]. Per-label AP and their mean over labels with positives."""
    aps = {name: average_precision(targets[:, k], scores[:, k]) for k, name in enumerate(names)}
    defined = [v for v in aps.values() if not np.isnan(v)]
    return {"mAP": float(np.mean(defined)) if defined else float("nan"), "AP": aps}
