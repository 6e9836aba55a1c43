"""Clip classification with multi-view testing (Kinetics / SSv2 conventions, ../shared/reference/metrics.md §6).

Views: K temporal clips × S spatial crops per video. Aggregation of the views' scores per video:
`sum` of softmax probabilities (PySlowFast's TestMeter, ENSEMBLE_METHOD "sum"), `mean` of softmax
probabilities (mmaction2's average_clips="prob"; the same argmax as sum), `logits` (mean of raw scores,
mmaction2's "score"), or `max` of probabilities (PySlowFast's alternative). Metrics over videos: top-1 and
top-5 (the label among the k highest aggregated scores, mmaction2's top_k_accuracy) and mean class accuracy
(mmaction2's: per-class hits / count over the union of predicted and true labels, a class predicted but never
true counting 0).
"""
from __future__ import annotations

import numpy as np

AGGREGATIONS = ("sum", "mean", "logits", "max")


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def aggregate(view_logits: np.ndarray, how: str = "sum") -> np.ndarray:
    """[views, classes] raw scores of one video → [classes] aggregated score."""
    if how not in AGGREGATIONS:
        raise ValueError(f"view aggregation {how!r}: choose one of {AGGREGATIONS}")
    if how == "logits":
        return view_logits.mean(0)
    p = softmax(view_logits.astype(np.float64))
    return {"sum": p.sum(0), "mean": p.mean(0), "max": p.max(0)}[how]


def top_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of videos whose label is among their k highest scores (ties broken by class order)."""
    k = min(k, scores.shape[1])
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean([label in row for label, row in zip(labels, best)]))


def mean_class_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    classes = np.union1d(pred, labels)
    accs = [np.mean(pred[labels == c] == c) if (labels == c).any() else 0.0 for c in classes]
    return float(np.mean(accs))


def clip_report(scores: np.ndarray, labels: np.ndarray, views: int, how: str) -> dict:
    """scores: [videos, classes] aggregated; labels: [videos] (−1: unlabeled, dropped)."""
    keep = labels >= 0
    scores, labels = scores[keep], labels[keep]
    if not len(labels):
        raise ValueError("no labelled video to score")
    pred = scores.argmax(1)
    return {"top1": top_k(scores, labels, 1), "top5": top_k(scores, labels, 5),
            "mean_class_accuracy": mean_class_accuracy(pred, labels), "videos": int(len(labels)),
            "views": views, "convention": f"over videos; {views} views per video aggregated by {how} "
            f"({'softmax probabilities' if how != 'logits' else 'raw scores'}); top-k: label among the k highest; "
            "mean class accuracy over the union of predicted and true classes (mmaction2), a class never true "
            "counts 0"}
