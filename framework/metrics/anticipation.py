"""Instrument anticipation (Rivoir et al. 2020, as the pitfalls_bn code lineage computes it).

Targets, per instrument and video: walking the frames backwards from the end with a counter c = h, c = 0 where
the instrument is present, else c = min(h, c + one frame's time): the minutes until its next occurrence,
0 while present and h after its last use (../shared/reference/metrics.md §2.1, here at any frame rate).
The 3-class target: 0 present (y = 0), 1 outside the horizon (y = h), 2 inside (0 < y < h).

Metrics in minutes, each per instrument over all evaluated frames pooled across videos, then averaged over
instruments (§2.3): inMAE over 0 < y < h, outMAE over y = h, wMAE = (inMAE + outMAE) / 2, eMAE over
0 < y < 0.1·h, pMAE over the frames whose *prediction* lies in 0.1·h < ŷ < 0.9·h. Frames where the instrument
is present (y = 0) are in none of in/out/w/eMAE. Predictions are not clipped at h (the training meter's
convention; one evaluation script clips — `clip=True` does that).
"""
from __future__ import annotations

import numpy as np

PRESENT, OUTSIDE, INSIDE = 0, 1, 2
METRICS = ("inMAE", "outMAE", "wMAE", "eMAE", "pMAE")


def time_to_next(present: np.ndarray, fps: float, horizon: float) -> np.ndarray:
    """present: bool [frames, instruments] → minutes to the next occurrence, clipped at `horizon` minutes."""
    step = 1.0 / (60.0 * fps)
    out = np.empty(present.shape, np.float64)
    c = np.full(present.shape[1:], float(horizon))
    for f in range(len(present) - 1, -1, -1):
        c = np.where(present[f], 0.0, np.minimum(horizon, c + step))
        out[f] = c
    return out


def classes(minutes: np.ndarray, horizon: float) -> np.ndarray:
    """present / outside the horizon / inside it, per frame and instrument (NaN minutes → −1, unlabeled)."""
    out = np.full(minutes.shape, INSIDE, np.int64)
    out[minutes <= 0] = PRESENT
    out[minutes >= horizon] = OUTSIDE
    out[np.isnan(minutes)] = -1
    return out


def _mae(err: np.ndarray, mask: np.ndarray) -> float:
    return float(err[mask].mean()) if mask.any() else float("nan")


def errors(pred: np.ndarray, target: np.ndarray, horizon: float, clip: bool = False) -> dict:
    """pred, target: minutes [frames, instruments] (target NaN: unlabeled, dropped). Per instrument and averaged."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if clip:
        pred = np.minimum(pred, horizon)
    h = horizon
    per_tool = {m: [] for m in METRICS}
    for k in range(target.shape[1]):
        keep = ~np.isnan(target[:, k])
        y, p = target[keep, k], pred[keep, k]
        err = np.abs(p - y)
        inside, outside = (y > 0) & (y < h), y >= h
        inmae, outmae = _mae(err, inside), _mae(err, outside)
        per_tool["inMAE"].append(inmae)
        per_tool["outMAE"].append(outmae)
        per_tool["wMAE"].append((inmae + outmae) / 2)
        per_tool["eMAE"].append(_mae(err, (y > 0) & (y < 0.1 * h)))
        per_tool["pMAE"].append(_mae(err, (p > 0.1 * h) & (p < 0.9 * h)))
    out = {m: _nanmean(v) for m, v in per_tool.items()}
    out["per_instrument"] = per_tool
    return out


def _nanmean(values: list[float]) -> float:
    x = np.asarray(values, np.float64)
    return float(np.mean(x[~np.isnan(x)])) if (~np.isnan(x)).any() else float("nan")
