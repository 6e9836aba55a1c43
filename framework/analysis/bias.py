"""Static vs dynamic bias of chosen layers of a model (Kowal et al.): the pairs of pairs.py through the model,
the features of features.py, the estimator of estimator.py; a report per layer (JSON), a table, plots.

The report, per layer: the raw scores s_dyn, s_stat (and s_res = 1), the softmax, the dimensions and their
percentages (the reference's numbers: compare models relatively, the shares are compressed by the fixed
residual), the unit labels (counts and percentages of the channels) and each channel's r_dyn, r_stat.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import estimator
from .features import clip_layer_features, layer_names

CONVENTION = ("Kowal et al. (CVPR 2022) dim_est: layer score s_f = pair cross-covariance around the factor mean "
              "over the total variance (summed over channels); softmax over (s_dyn, s_stat, 1); dims = int(w·C), "
              "residual takes the remainder. Units: per-channel r_f over the factor's own variance, labelled with "
              "strict inequalities at the threshold. Features: stage outputs averaged over time and space.")


def collect(model, source, layers: list[int], device, channels_last: bool = False, progress: bool = False
            ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], np.ndarray]:
    """Features of both clips of every pair: ({layer: za [N, C]}, {layer: zb [N, C]}, factor [N])."""
    za: dict[int, list] = {k: [] for k in layers}
    zb: dict[int, list] = {k: [] for k in layers}
    factors = []
    with tqdm(total=source.pairs, desc="pairs", unit="pair", disable=not progress) as bar:
        for a, b, f in source:
            fa = clip_layer_features(model, a.to(device), layers, channels_last)
            fb = clip_layer_features(model, b.to(device), layers, channels_last)
            for k in layers:
                za[k].append(fa[k].cpu().double().numpy())
                zb[k].append(fb[k].cpu().double().numpy())
            factors.append(f.numpy())
            bar.update(len(f))
    return ({k: np.concatenate(v) for k, v in za.items()}, {k: np.concatenate(v) for k, v in zb.items()},
            np.concatenate(factors))


def layer_report(za: np.ndarray, zb: np.ndarray, factor: np.ndarray, threshold: float) -> dict:
    r = estimator.unit_scores(za, zb, factor)
    counts = estimator.unit_counts(estimator.unit_labels(r, threshold))
    C = za.shape[1]
    return {**estimator.layer_scores(za, zb, factor).as_dict(), "units": counts,
            "unit_percent": {k: round(100 * v / C, 1) for k, v in counts.items()},
            "r_dynamic": r[estimator.DYNAMIC].tolist(), "r_static": r[estimator.STATIC].tolist()}


def analyse(za: dict, zb: dict, factor: np.ndarray, names: dict[int, str], threshold: float = estimator.THRESHOLD,
            about: dict | None = None) -> dict:
    return {"convention": CONVENTION, "threshold": threshold,
            "pairs": {"total": int(len(factor)), "dynamic": int((factor == estimator.DYNAMIC).sum()),
                      "static": int((factor == estimator.STATIC).sum()), **(about or {})},
            "layers": {names[k]: layer_report(za[k], zb[k], factor, threshold) for k in za}}


def measure(model, source, layers: list[int], device, threshold: float = estimator.THRESHOLD,
            channels_last: bool = False, progress: bool = False, about: dict | None = None) -> dict:
    """The whole measurement: pairs → features → report."""
    za, zb, factor = collect(model, source, layers, device, channels_last, progress)
    names = dict(enumerate(layer_names(model.backbone)))
    info = {"styles": list(source.spec.styles), "clip_len": source.clip_len, "seed": source.spec.seed, **(about or {})}
    return analyse(za, zb, factor, names, threshold, info)


def table(report: dict) -> str:
    head = ("layer     C   s_dyn   s_stat   dyn%   stat%   res%   units D/S/J/R (undecided)\n"
            "-------  ----  ------  ------  -----  -----  -----  ---------------------------")
    rows = []
    for name, r in report["layers"].items():
        s, p, u = r["scores"], r["percent"], r["units"]
        rows.append(f"{name:<7}  {r['channels']:>4}  {s['dynamic']:>6.3f}  {s['static']:>6.3f}  {p['dynamic']:>5.1f}  "
                    f"{p['static']:>5.1f}  {p['residual']:>5.1f}  {u['dynamic']}/{u['static']}/{u['joint']}/"
                    f"{u['residual']} ({u['undecided']})")
    return "\n".join([head, *rows])


def scalars(report: dict) -> dict[str, float]:
    """The numbers worth a curve: raw scores, shares and unit percentages per layer."""
    out = {}
    for name, r in report["layers"].items():
        for factor in estimator.FACTORS:
            out[f"{name}/s_{factor}"] = r["scores"][factor]
            out[f"{name}/{factor}_percent"] = r["percent"][factor]
        for label in ("dynamic", "static", "joint", "residual"):
            out[f"{name}/units_{label}_percent"] = r["unit_percent"][label]
    return out


def write(report: dict, out: Path) -> list[Path]:
    """bias.json, bias_table.txt and the plots, in `out`."""
    from ..reports import write_json
    from .plots import bias_channels, bias_layers, bias_units

    out.mkdir(parents=True, exist_ok=True)
    files = [write_json(out / "bias.json", report)]
    (out / "bias_table.txt").write_text(table(report) + "\n")
    files.append(out / "bias_table.txt")
    files += [bias_layers(report, out / "bias_layers.png"), bias_units(report, out / "bias_units.png"),
              bias_channels(report, out / "bias_channels.png")]
    return files

