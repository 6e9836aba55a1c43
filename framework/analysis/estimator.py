"""The static/dynamic estimator of Kowal et al. (CVPR 2022), exactly as their `dim_est` computes it (itself
Esser et al.'s IIN `dim_callback`); reference/analysis.md §1.5–1.6.

Inputs: za, zb [N, C], the pooled features of clip 1 and clip 2 of N pairs, and factor [N] (0 = dynamic pair:
same frames, two appearances; 1 = static pair: same appearance, frames shuffled).

Layer level (§1.5): V = Σ_c mean_i (z_ic − μ_c)² over all 2N vectors (population variance, summed over
channels); for each factor f, μ_f = ½(mean za[F_f] + mean zb[F_f]) and s_f = Σ_c mean_{F_f}(za − μ_f)(zb − μ_f) / V;
the residual score is fixed at 1; w = softmax(s_dyn, s_stat, 1); dims_f = int(w_f · C) for dynamic and static,
the residual takes the remainder; percent = round(100 · dims / C, 1). The shares are compressed by the fixed
residual (the residual share is ≥ 1/3 whenever both scores are ≤ 1), so the raw scores are reported too.

Unit level (§1.6): r_f,c = mean_{F_f}(za_c − μ_f,c)(zb_c − μ_f,c) / var_c(concat(za[F_f], zb[F_f])), the
factor's own (population) variance; labels with threshold t on the raw r, strict inequalities: dynamic if
r_dyn > t and r_stat < t, static if r_stat > t and r_dyn < t, joint if both > t, residual if both < t. A
channel with a score exactly at t, or undefined (a constant channel: 0/0), gets none of the four labels in the
reference code; it is counted as `undecided` here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DYNAMIC, STATIC, RESIDUAL = 0, 1, 2  # the reference's factor indices
FACTORS = ("dynamic", "static")
UNIT_LABELS = ("dynamic", "static", "joint", "residual", "undecided")
THRESHOLD = 0.5  # --joint_encoding_thresh default


@dataclass
class LayerScores:
    scores: np.ndarray  # [3] raw s_dyn, s_stat, s_res = 1
    softmax: np.ndarray  # [3]
    dims: np.ndarray  # [3] int: int(w·C) for dynamic and static, the remainder residual
    percent: np.ndarray  # [3] round(100·dims/C, 1)
    channels: int

    def as_dict(self) -> dict:
        names = (*FACTORS, "residual")
        return {"scores": dict(zip(names, self.scores.tolist())), "softmax": dict(zip(names, self.softmax.tolist())),
                "dims": dict(zip(names, self.dims.tolist())), "percent": dict(zip(names, self.percent.tolist())),
                "channels": self.channels}


def _check(za: np.ndarray, zb: np.ndarray, factor: np.ndarray) -> None:
    if za.ndim != 2 or za.shape != zb.shape or factor.shape != (za.shape[0],):
        raise ValueError(f"need za, zb [N, C] of one shape and factor [N]; got {za.shape}, {zb.shape}, {factor.shape}")
    for f, name in enumerate(FACTORS):
        if not (factor == f).any():
            raise ValueError(f"no {name} pairs (factor {f}): the estimator needs pairs of both factors")


def _factor_means(za, zb, factor, f):
    a, b = za[factor == f], zb[factor == f]
    return a, b, 0.5 * (a.mean(0) + b.mean(0))


def softmax(scores: np.ndarray) -> np.ndarray:
    """The reference's softmax_fn(use_max=True): exp(s − max s) / Σ."""
    e = np.exp(scores - np.max(scores))
    return e / e.sum()


def layer_scores(za: np.ndarray, zb: np.ndarray, factor: np.ndarray) -> LayerScores:
    za, zb, factor = np.asarray(za, np.float64), np.asarray(zb, np.float64), np.asarray(factor)
    _check(za, zb, factor)
    z = np.concatenate([za, zb])
    total = ((z - z.mean(0)) ** 2).mean(0).sum()
    scores = []
    for f in (DYNAMIC, STATIC):
        a, b, mu = _factor_means(za, zb, factor, f)
        scores.append(((a - mu) * (b - mu)).mean(0).sum() / total)
    scores = np.array([*scores, 1.0])
    w = softmax(scores)
    C = za.shape[1]
    dims = [int(s * C) for s in w[:2]]
    dims = np.array([*dims, C - sum(dims)])
    percent = np.array([round(100 * d / dims.sum(), 1) for d in dims])
    return LayerScores(scores, w, dims, percent, C)


def unit_scores(za: np.ndarray, zb: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """[2, C]: per channel, r_dyn and r_stat (the pair's cross-covariance over the factor's own variance)."""
    za, zb, factor = np.asarray(za, np.float64), np.asarray(zb, np.float64), np.asarray(factor)
    _check(za, zb, factor)
    out = []
    for f in (DYNAMIC, STATIC):
        a, b, mu = _factor_means(za, zb, factor, f)
        var = np.concatenate([a, b]).var(0)
        with np.errstate(divide="ignore", invalid="ignore"):  # a constant channel: 0/0, undecided below
            out.append(((a - mu) * (b - mu)).mean(0) / var)
    return np.stack(out)


def unit_labels(r: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """[C] indices into UNIT_LABELS from r [2, C] (strict inequalities, as the reference)."""
    d, s = r[DYNAMIC], r[STATIC]
    labels = np.full(r.shape[1], UNIT_LABELS.index("undecided"))
    labels[(d > threshold) & (s < threshold)] = UNIT_LABELS.index("dynamic")
    labels[(s > threshold) & (d < threshold)] = UNIT_LABELS.index("static")
    labels[(d > threshold) & (s > threshold)] = UNIT_LABELS.index("joint")
    labels[(d < threshold) & (s < threshold)] = UNIT_LABELS.index("residual")
    return labels


def unit_counts(labels: np.ndarray) -> dict[str, int]:
    return {name: int((labels == i).sum()) for i, name in enumerate(UNIT_LABELS)}
