"""Every phase-recognition number the field reports, from per-video (ground truth, prediction) id rows.

Ids are 0-based here (the manifest's label indices; −1 = unlabeled, dropped); the MATLAB protocol's 1-based
ids are made here and nowhere else. Each block of the report names its convention.
"""
from __future__ import annotations

import numpy as np

from . import cholec80
from .classification import confusion, macro, per_video

FRAME_POOLED = ("frame-pooled: all evaluated frames concatenated; macro precision/recall/Jaccard/F1 over the "
                "classes in ground truth ∪ prediction, 0 where undefined (scikit-learn macro, zero_division=0); "
                "balanced accuracy = mean recall over classes in the ground truth")
PER_VIDEO = ("per video, unrelaxed: accuracy and macro precision/recall/Jaccard/F1 (classes in the video's "
             "ground truth ∪ prediction, 0 where undefined), then mean ± std (N-1) over videos")


def phase_report(videos: dict[str, tuple[np.ndarray, np.ndarray]], phases: list[str], rows_per_second: float,
                 offsets: str = "auto") -> dict:
    """videos: id → (gt, pred) 0-based ids per row. The three protocol modes, the per-video and frame-pooled
    metrics and the confusion matrix."""
    pairs = {v: _labelled(gt, pred) for v, (gt, pred) in videos.items()}
    pairs = {v: p for v, p in pairs.items() if len(p[0])}
    if not pairs:
        raise ValueError("no labelled frames to score: the split has no phase labels")
    n = len(phases)
    report = {f"protocol_{mode}": cholec80.protocol([(g + 1, p + 1) for g, p in pairs.values()], n,
                                                     rows_per_second, mode, offsets)
              for mode in cholec80.MODES}
    report["per_video"] = {**per_video(list(pairs.values()), n), "convention": PER_VIDEO}
    gt = np.concatenate([g for g, _ in pairs.values()])
    pred = np.concatenate([p for _, p in pairs.values()])
    report["frame_pooled"] = {**macro(gt, pred, n), "convention": FRAME_POOLED}
    report["confusion"] = {"labels": list(phases), "rows_true_columns_predicted": confusion(gt, pred, n).tolist()}
    report["videos"], report["frames"] = len(pairs), int(len(gt))
    return report


def _labelled(gt, pred) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt, np.int64), np.asarray(pred, np.int64)
    keep = gt >= 0
    return gt[keep], pred[keep]


def summary_lines(report: dict) -> list[str]:
    """The headline numbers, one line per convention, as papers print them."""
    lines = []
    for mode in cholec80.MODES:
        r = report[f"protocol_{mode}"]
        lines.append(f"{mode:>9} protocol: " + "  ".join(
            f"{k[:4]} {r[k]['mean']:.2f} ± {r[k]['std']:.2f}" for k in ("accuracy", "precision", "recall", "jaccard")))
    pv, fp = report["per_video"], report["frame_pooled"]
    lines.append(f"per video (unrelaxed): acc {100 * pv['accuracy']['mean']:.2f} ± {100 * pv['accuracy']['std']:.2f}"
                 f"  F1 {100 * pv['f1']['mean']:.2f} ± {100 * pv['f1']['std']:.2f}")
    lines.append(f"frame-pooled: acc {100 * fp['accuracy']:.2f}  macro F1 {100 * fp['f1']:.2f}  "
                 f"Jacc {100 * fp['jaccard']:.2f}  balanced acc {100 * fp['balanced_accuracy']:.2f}")
    return lines
