"""Temporal action detection mAP as ActivityNet's `Evaluation/eval_detection.py` computes it, and the
ActivityNet JSON files it reads.

Per class, the detections of *all* videos are visited in descending score order (ties: in the reverse of their
order in the results file, which is what the official `argsort()[::-1]` gives wherever numpy's sort is
stable). Each detection is compared with the ground truth (GT) of its class in its video, visited in
descending tIoU order (ties likewise reversed); at each threshold it takes the first GT not yet matched at
that threshold, provided tIoU >= threshold, else it is a false positive: a duplicate of an already matched GT
falls through to the next-best GT or becomes a false positive. A detection in a video without GT of its class
is a false positive at every threshold. AP is VOC-style interpolated (precision made monotone from the right,
summed over the recall steps); a class without detections has AP 0; mAP(t) is the mean over the classes of
the GT (every GT class counts equally), and the average mAP is its mean over the thresholds.

Conventions (reference/metrics.md §3):
- `anet`: tIoU 0.50:0.05:0.95 (linspace(0.5, 0.95, 10)), the ActivityNet default.
- `thumos`: tIoU 0.3:0.1:0.7 with the same evaluator, as modern THUMOS14 code reports it; the official THUMOS
  MATLAB (TH14evalDet) differs: tIoU > threshold, 'Ambiguous' GT ignored, AP not interpolated.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

THRESHOLDS = {"anet": np.linspace(0.5, 0.95, 10), "thumos": np.linspace(0.3, 0.7, 5)}
CONVENTIONS = {
    "anet": "ActivityNet eval_detection.py: per class over all videos by descending score, each GT matched once "
            "per tIoU threshold (tIoU >= t), VOC interpolated AP, mean over GT classes; tIoU 0.50:0.05:0.95",
    "thumos": "the same evaluator at THUMOS14's tIoU 0.3:0.1:0.7 (as ActionFormer and mmaction2 report it; the "
              "official TH14evalDet MATLAB uses tIoU > t, ignores Ambiguous GT and does not interpolate)",
}


class DetectionFileError(ValueError):
    """A results or ground-truth file that cannot be scored; the message is one line for the user."""


@dataclass(frozen=True)
class Detection:
    video: str
    label: str
    start: float
    end: float
    score: float


def tiou(segment, segments: np.ndarray) -> np.ndarray:
    """tIoU of one [start, end] with each row of segments [N, 2] (eval_detection's segment_iou)."""
    segments = np.asarray(segments, np.float64).reshape(-1, 2)
    inter = (np.minimum(segment[1], segments[:, 1]) - np.maximum(segment[0], segments[:, 0])).clip(0)
    union = (segments[:, 1] - segments[:, 0]) + (segment[1] - segment[0]) - inter
    return inter / union


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC 2011-style AP: precision padded with 0 at both ends, recall with 0 and 1, precision made
    non-increasing from the right, Δrecall × precision summed where recall changes."""
    p = np.concatenate([[0.0], precision, [0.0]])
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[steps] - r[steps - 1]) * p[steps]))


def descending(values: np.ndarray) -> np.ndarray:
    """Indices by descending value, ties in reverse input order (the official `argsort()[::-1]`)."""
    return np.argsort(values, kind="stable")[::-1]


def class_ap(gt: dict[str, np.ndarray], detections: list[tuple[str, float, float, float]],
             thresholds: np.ndarray) -> np.ndarray:
    """AP at each threshold of one class. gt: video → [G, 2] segments of this class; detections: (video,
    start, end, score) in results-file order."""
    ap = np.zeros(len(thresholds))
    n_gt = sum(len(g) for g in gt.values())
    if not detections or not n_gt:
        return ap
    tp = np.zeros((len(thresholds), len(detections)))
    locked = {v: np.zeros((len(thresholds), len(g)), bool) for v, g in gt.items()}
    for i, k in enumerate(descending(np.array([d[3] for d in detections], np.float64))):
        video, start, end, _ = detections[k]
        if video not in gt or not len(gt[video]):
            continue  # no GT of this class in the video: a false positive at every threshold
        overlap = tiou((start, end), gt[video])
        visit = descending(overlap)
        for t, threshold in enumerate(thresholds):
            for j in visit:
                if overlap[j] < threshold:
                    break
                if not locked[video][t, j]:
                    locked[video][t, j] = True
                    tp[t, i] = 1
                    break
    tp_sum = np.cumsum(tp, axis=1)
    fp_sum = np.cumsum(1 - tp, axis=1)
    for t in range(len(thresholds)):
        ap[t] = interpolated_ap(tp_sum[t] / (tp_sum[t] + fp_sum[t]), tp_sum[t] / n_gt)
    return ap


def detection_ap(gt: dict[str, list[tuple[float, float, str]]], detections: list[Detection],
                 thresholds) -> dict:
    """gt: video → [(start, end, label)]; detections in results-file order. Classes: those of the GT, in the
    order they first appear (the official class index); detections of other classes are not scored (the
    official code stops with a KeyError on them) and are counted under `ignored_detections`."""
    thresholds = np.asarray(thresholds, np.float64)
    classes = list(dict.fromkeys(label for segs in gt.values() for _, _, label in segs))
    per_class_gt = {c: {} for c in classes}
    for video, segs in gt.items():
        for start, end, label in segs:
            per_class_gt[label].setdefault(video, []).append((start, end))
    per_class_det = {c: [] for c in classes}
    ignored = 0
    for d in detections:
        if d.label in per_class_det:
            per_class_det[d.label].append((d.video, d.start, d.end, d.score))
        else:
            ignored += 1
    ap = np.zeros((len(thresholds), len(classes)))
    for c, name in enumerate(classes):
        segs = {v: np.asarray(s, np.float64) for v, s in per_class_gt[name].items()}
        ap[:, c] = class_ap(segs, per_class_det[name], thresholds)
    mean = ap.mean(axis=1) if classes else np.zeros(len(thresholds))
    return {"classes": classes, "thresholds": thresholds, "ap": ap, "mAP": mean,
            "average_mAP": float(mean.mean()), "ignored_detections": ignored}


def detection_report(gt, detections: list[Detection], conventions=("anet", "thumos")) -> dict:
    """The report's blocks: per convention mAP at each threshold, the average, per-class AP."""
    out, ignored = {}, 0
    for name in conventions:
        r = detection_ap(gt, detections, THRESHOLDS[name])
        ignored = r["ignored_detections"]
        out[name] = {
            "convention": CONVENTIONS[name],
            "mAP": {f"{t:.2f}": float(m) for t, m in zip(r["thresholds"], r["mAP"])},
            "average_mAP": r["average_mAP"],
            "AP_per_class": {c: {f"{t:.2f}": float(a) for t, a in zip(r["thresholds"], r["ap"][:, k])}
                             for k, c in enumerate(r["classes"])},
        }
    out.update(ground_truth=sum(len(s) for s in gt.values()), detections=len(detections), ignored_detections=ignored)
    return out


# -- ActivityNet JSON files --------------------------------------------------------------------------------
def write_results(path: Path, detections: list[Detection]) -> Path:
    """`{"version", "results": {video: [{"label", "segment": [s, e], "score"}]}, "external_data"}`."""
    results: dict[str, list] = {}
    for d in detections:
        results.setdefault(d.video, []).append({"label": d.label, "segment": [float(d.start), float(d.end)],
                                                "score": float(d.score)})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "VERSION 1.3", "results": results,
                                "external_data": {"used": False, "details": "videotrain"}}))
    return path


def write_ground_truth(path: Path, gt: dict[str, list[tuple[float, float, str]]], subset: str = "validation",
                       durations: dict[str, float] | None = None) -> Path:
    """`{"version", "taxonomy", "database": {video: {"subset", "duration", "annotations": [...]}}}`."""
    database = {v: {"subset": subset, "duration": float((durations or {}).get(v, 0.0)),
                    "annotations": [{"segment": [float(s), float(e)], "label": lab} for s, e, lab in segs]}
                for v, segs in gt.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "VERSION 1.3", "taxonomy": [], "database": database}))
    return path


def _load(path: Path, key: str, what: str) -> dict:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DetectionFileError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise DetectionFileError(f"{path}: not JSON ({e})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get(key), dict):
        raise DetectionFileError(f"{path}: not an ActivityNet {what} file (no '{key}' object)")
    return raw[key]


def _segment(value, where: str) -> tuple[float, float]:
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    s, e = (float(value[0]), float(value[1])) if ok and all(isinstance(x, (int, float)) for x in value) else (0, 0)
    if not ok or not (math.isfinite(s) and math.isfinite(e)) or e < s:
        raise DetectionFileError(f"{where}: malformed segment {value!r} (need [start, end] seconds, start <= end)")
    return s, e


def read_ground_truth(path: Path, subset: str = "validation") -> dict[str, list[tuple[float, float, str]]]:
    """The videos of one subset and their annotations (videos without annotations are kept, with none)."""
    database = _load(path, "database", "ground-truth")
    gt = {}
    for video, entry in database.items():
        if not isinstance(entry, dict) or entry.get("subset") != subset:
            continue
        gt[video] = [(*_segment(a.get("segment"), f"{path}: {video}"), str(a.get("label")))
                     for a in entry.get("annotations", [])]
    if not gt:
        subsets = sorted({str(e.get("subset")) for e in database.values() if isinstance(e, dict)})
        raise DetectionFileError(f"{path}: no video in subset {subset!r} (subsets: {', '.join(subsets)})")
    return gt


def read_results(path: Path) -> list[Detection]:
    results = _load(path, "results", "results")
    out = []
    for video, items in results.items():
        if not isinstance(items, list):
            raise DetectionFileError(f"{path}: results of {video} must be a list of detections")
        for k, d in enumerate(items):
            where = f"{path}: {video}[{k}]"
            if not isinstance(d, dict) or "label" not in d or "segment" not in d or "score" not in d:
                raise DetectionFileError(f"{where}: a detection needs 'label', 'segment' and 'score', got {d!r}")
            try:
                score = float(d["score"])
            except (TypeError, ValueError):
                raise DetectionFileError(f"{where}: score {d['score']!r} is not a number") from None
            out.append(Detection(str(video), str(d["label"]), *_segment(d["segment"], where), score))
    return out


def check_against(detections: list[Detection], gt: dict, subset: str, extra_videos: str = "error") -> list[Detection]:
    """Labels the GT lacks are refused (the official evaluator crashes on them); videos the GT subset lacks are
    refused, or with extra_videos="fp" kept as false positives, which is what the official evaluator does."""
    labels = {lab for segs in gt.values() for _, _, lab in segs}
    unknown = sorted({d.label for d in detections} - labels)
    if unknown:
        raise DetectionFileError(f"results name {len(unknown)} label(s) the ground truth of subset {subset!r} does "
                                 f"not have: {', '.join(unknown[:5])}{' …' if len(unknown) > 5 else ''}")
    extra = sorted({d.video for d in detections} - set(gt))
    if extra and extra_videos == "error":
        raise DetectionFileError(f"results for {len(extra)} video(s) not in the ground truth's {subset!r} subset "
                                 f"({', '.join(extra[:3])}{' …' if len(extra) > 3 else ''}): wrong --subset or "
                                 "video ids? (--extra-videos fp counts them as false positives, as the official "
                                 "evaluator does)")
    return detections
