"""The Cholec80 / M2CAI16 phase-recognition protocol, computed as the MATLAB evaluation computes it.

The field's numbers come from a MATLAB pair (TMRNet's copy of the M2CAI16 challenge code): `Evaluate.m`
scores one video, `Main.m` aggregates (../shared/reference/metrics.md §1). Reproduced here step by step:

- relaxation: for every run of ground-truth phase p, within its first t = min(10 s · rows/s, run length)
  rows an error in the phase's *head* set (the prediction is the previous phase(s): a late transition) is
  forgiven, and within its last t rows an error in the *tail* set (an early transition);
- per phase: TP counted over the union of predicted and true frames, Jaccard = TP/|union|, precision =
  TP/|pred|, recall = TP/|gt| (× 100; can exceed 100 because a relaxed frame counts for two phases), NaN for
  a phase the video's ground truth lacks; accuracy = forgiven-or-correct frames / all frames;
- aggregation: entries above 100 clipped to 100 (Inf too); Jaccard and recall: plain mean ± std over phases of
  each phase's NaN-excluding mean over videos; precision: the same, NaN-excluding over phases too;
  accuracy: mean ± std over videos; std with N − 1, as MATLAB's.

Modes: `official` keeps the known indexing bug of the tail rule (its mask is computed on the last t rows and
then applied to the *first* t, Funke et al.), so numbers compare with published ones; `corrected` applies the
tail rule to the last t rows; `none` forgives nothing (the unrelaxed variant).

Phase ids here are 1..P in workflow order, as in the MATLAB code (the offsets ±1, ±2 refer to that order).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

MODES = ("official", "corrected", "none")
WINDOW_SECONDS = 10.0


@dataclass(frozen=True)
class Offsets:
    """Per phase (1-based): the forgiven errors (pred − gt) at the head and at the tail of its runs."""
    name: str
    head: dict[int, frozenset]
    tail: dict[int, frozenset]

    def rules(self, phase: int) -> tuple[frozenset, frozenset]:
        return self.head.get(phase, frozenset({-1})), self.tail.get(phase, frozenset({1}))


def _offsets(name: str, two_tail: tuple[int, ...], two_both: tuple[int, ...]) -> Offsets:
    """Phases in `two_tail` also forgive +2 at the tail; phases in `two_both` forgive −2 at the head and +2
    at the tail; every other phase forgives −1 at the head and +1 at the tail (the "general situation")."""
    head = {p: frozenset({-1, -2}) for p in two_both}
    tail = {p: frozenset({1, 2}) for p in two_tail + two_both}
    return Offsets(name, head, tail)


# Evaluate.m (7 phases): GB dissection and packaging (4, 5) may jump +2; cleaning/coagulation and GB
# retraction (6, 7) −2 and +2. Evaluate_m2cai.m prepends TrocarPlacement, so everything shifts by one.
CHOLEC80 = _offsets("cholec80", (4, 5), (6, 7))
M2CAI16 = _offsets("m2cai16", (5, 6), (7, 8))
GENERAL = _offsets("general", (), ())
OFFSETS = {"cholec80": CHOLEC80, "m2cai16": M2CAI16, "general": GENERAL}

CHOLEC80_PHASES = ("Preparation", "CalotTriangleDissection", "ClippingCutting", "GallbladderDissection",
                   "GallbladderPackaging", "CleaningCoagulation", "GallbladderRetraction")
M2CAI16_PHASES = ("TrocarPlacement", "Preparation", "CalotTriangleDissection", "ClippingCutting",
                  "GallbladderDissection", "GallbladderPackaging", "CleaningCoagulation", "GallbladderRetraction")


def offsets_for(num_phases: int, name: str = "auto") -> Offsets:
    """`auto`: the Cholec80 rules for 7 phases, M2CAI16's for 8, the general rule (−1 head, +1 tail) otherwise."""
    if name == "auto":
        name = {7: "cholec80", 8: "m2cai16"}.get(num_phases, "general")
    if name not in OFFSETS:
        raise ValueError(f"relaxation offsets {name!r}: choose auto or one of {sorted(OFFSETS)}")
    return OFFSETS[name]


def window_rows(rows_per_second: float, seconds: float = WINDOW_SECONDS) -> int:
    """The relaxation window counted in label rows (10·fps in the MATLAB code, fps = the rows' rate)."""
    return max(1, int(round(seconds * rows_per_second)))


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end] (inclusive) of each run of True, as bwconncomp finds them on a 1-D mask."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def relaxed_diff(gt: np.ndarray, pred: np.ndarray, window: int, offsets: Offsets, mode: str) -> np.ndarray:
    """pred − gt with the forgiven boundary errors set to 0 (Evaluate.m's `updatedDiff`)."""
    if mode not in MODES:
        raise ValueError(f"protocol mode {mode!r}: choose one of {MODES}")
    diff = pred.astype(np.int64) - gt.astype(np.int64)
    if mode == "none":
        return diff
    updated = diff.copy()
    for phase in np.unique(gt):
        head, tail = offsets.rules(int(phase))
        for s, e in runs(gt == phase):
            cur = diff[s:e + 1].copy()  # every run starts from the unrelaxed differences
            t = min(window, len(cur))
            cur[:t][np.isin(cur[:t], list(head))] = 0  # late transition (applied first, as in the code)
            late = np.isin(cur[len(cur) - t:], list(tail))  # early transition: the mask of the last t rows ...
            if mode == "official":
                cur[:t][late] = 0  # ... indexes the run from its start in Evaluate.m (the known bug)
            else:
                cur[len(cur) - t:][late] = 0
            updated[s:e + 1] = cur
    return updated


def divide(num: float, den: float) -> float:
    """MATLAB's division: x/0 is Inf for x > 0 and NaN for 0/0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(num) / np.float64(den))


def evaluate_video(gt: np.ndarray, pred: np.ndarray, num_phases: int, window: int, offsets: Offsets,
                   mode: str) -> dict:
    """One video (Evaluate.m): per-phase Jaccard, precision, recall [P] (NaN where the phase is absent from
    the ground truth; precision Inf/NaN where it is never predicted, as MATLAB's division gives) and accuracy.
    gt, pred: phase ids 1..P per label row."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim != 1 or not len(gt):
        raise ValueError(f"ground truth and prediction must be equally long, non-empty 1-D rows "
                         f"({gt.shape} vs {pred.shape})")
    updated = relaxed_diff(gt, pred, window, offsets, mode)
    jacc, prec, rec = (np.full(num_phases, np.nan) for _ in range(3))
    for i, p in enumerate(range(1, num_phases + 1)):
        in_gt, in_pred = gt == p, pred == p
        if not in_gt.any():
            continue  # NaN: excluded later by the NaN-aware means
        union = in_gt | in_pred
        tp = np.sum(updated[union] == 0)
        jacc[i] = 100 * tp / union.sum()
        prec[i] = 100 * divide(tp, in_pred.sum())
        rec[i] = 100 * tp / in_gt.sum()
    return {"jaccard": jacc, "precision": prec, "recall": rec,
            "accuracy": 100 * np.sum(updated == 0) / len(gt)}


def matlab_std(x: np.ndarray) -> float:
    """MATLAB's std / nanstd: N − 1 normalisation, 0 for a single value, NaN for none."""
    x = x[~np.isnan(x)]
    if not len(x):
        return float("nan")
    return 0.0 if len(x) == 1 else float(np.std(x, ddof=1))


def _nanmean(x: np.ndarray, axis=None):
    with warnings.catch_warnings():  # a phase absent from every video is NaN, as in MATLAB: no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def aggregate(per_video: list[dict]) -> dict:
    """Main.m: P × V matrices clipped at 100; Jaccard and recall: mean ± std over phases of the per-phase
    NaN-excluding means over videos (a plain mean over phases: a phase absent from all videos makes it NaN);
    precision: NaN-excluding over phases too; accuracy: mean ± std over videos."""
    if not per_video:
        raise ValueError("no videos to aggregate")
    out = {}
    for key in ("jaccard", "precision", "recall"):
        m = np.minimum(np.stack([v[key] for v in per_video], axis=1), 100.0)  # Inf → 100; NaN stays NaN
        per_phase = _nanmean(m, axis=1)
        if key == "precision":
            mean, std = float(_nanmean(per_phase)), matlab_std(per_phase)
        else:
            mean = float(np.mean(per_phase))
            std = matlab_std(per_phase) if not np.isnan(per_phase).any() else float("nan")
        out[key] = {"mean": mean, "std": std, "per_phase": per_phase.tolist(),
                    "per_phase_std": [matlab_std(row) for row in m]}
    acc = np.array([v["accuracy"] for v in per_video], np.float64)
    out["accuracy"] = {"mean": float(acc.mean()), "std": matlab_std(acc), "per_video": acc.tolist()}
    return out


def protocol(videos: list[tuple[np.ndarray, np.ndarray]], num_phases: int, rows_per_second: float,
             mode: str = "official", offsets: str = "auto") -> dict:
    """The whole protocol over (gt, pred) pairs of phase ids 1..P: the aggregated numbers and a label
    of the convention they follow."""
    rules = offsets_for(num_phases, offsets)
    window = window_rows(rows_per_second)
    scored = [evaluate_video(gt, pred, num_phases, window, rules, mode) for gt, pred in videos]
    result = aggregate(scored)
    result["convention"] = describe(mode, rules, window, rows_per_second)
    return result


def describe(mode: str, rules: Offsets, window: int, rows_per_second: float) -> str:
    relax = {"official": f"relaxed boundaries, {rules.name} offsets, tail-rule indexing bug kept (as published)",
             "corrected": f"relaxed boundaries, {rules.name} offsets, tail rule on the real last rows",
             "none": "no relaxation"}[mode]
    return (f"Cholec80/M2CAI16 MATLAB protocol ({relax}; window {window} rows = {WINDOW_SECONDS:g} s at "
            f"{rows_per_second:g} rows/s): Jaccard/precision/recall mean ± std (N-1) over phases of per-phase "
            "means over videos, NaN-excluded, clipped at 100; accuracy mean ± std (N-1) over videos")
