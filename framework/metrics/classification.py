"""Frame classification metrics outside the MATLAB protocol, each with the convention it follows.

- `macro`: precision, recall, Jaccard and F1 per class, averaged over the classes that occur in the ground
  truth or the prediction (scikit-learn's `average="macro"` label set), 0 where a class has no predicted
  (precision) or no true (recall) frame — sklearn's zero_division=0. The pitfalls_bn lineage computes these on
  all test frames concatenated ("frame-pooled").
- `balanced_accuracy`: mean recall over the classes present in the ground truth (sklearn).
- `per_video`: accuracy and the macro metrics of each video, then mean ± std (N − 1) over videos.
Frames labelled −1 (unlabeled) are dropped before anything is counted.
"""
from __future__ import annotations

import numpy as np


def labelled(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt), np.asarray(pred)
    keep = gt >= 0
    return gt[keep], pred[keep]


def confusion(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """[true, predicted] frame counts over the labelled frames."""
    gt, pred = labelled(gt, pred)
    return np.bincount(gt * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num), np.float64), where=den > 0)


def per_class(cm: np.ndarray) -> dict:
    """Per-class precision, recall, Jaccard, F1 from a confusion matrix (0 where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    pred, true = cm.sum(0), cm.sum(1)
    return {"precision": _ratio(tp, pred), "recall": _ratio(tp, true), "jaccard": _ratio(tp, pred + true - tp),
            "f1": _ratio(2 * tp, pred + true)}


def macro(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> dict:
    """Macro metrics over the classes in ground truth ∪ prediction, plus accuracy and balanced accuracy."""
    gt, pred = labelled(gt, pred)
    if not len(gt):
        raise ValueError("no labelled frames to score")
    cm = confusion(gt, pred, num_classes)
    present = (cm.sum(0) + cm.sum(1)) > 0
    scores = {k: float(v[present].mean()) for k, v in per_class(cm).items()}
    true = cm.sum(1)
    scores["accuracy"] = float(np.mean(gt == pred))
    scores["balanced_accuracy"] = float((np.diag(cm)[true > 0] / true[true > 0]).mean())
    return scores


def mean_std(values: list[float]) -> dict:
    x = np.asarray(values, np.float64)
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0}


def per_video(videos: list[tuple[np.ndarray, np.ndarray]], num_classes: int) -> dict:
    """Each video's accuracy and macro metrics, then mean ± std (N − 1) over videos with labelled frames."""
    scored = [macro(gt, pred, num_classes) for gt, pred in videos if (np.asarray(gt) >= 0).any()]
    if not scored:
        raise ValueError("no video has labelled frames")
    keys = ("accuracy", "precision", "recall", "jaccard", "f1")
    return {k: mean_std([s[k] for s in scored]) for k in keys}
