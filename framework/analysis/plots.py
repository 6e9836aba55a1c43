"""Plots of the analysis reports (one PNG each, Agg; the helpers of framework/plots.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plots import _pyplot, _save

FACTOR_COLOURS = {"dynamic": "tab:red", "static": "tab:blue", "joint": "tab:purple", "residual": "tab:gray",
                  "undecided": "white"}
UNIT_COLOURS = {"S": "tab:blue", "ST": "tab:red", "S+ST": "tab:purple", "none": "lightgray"}


def _stacked(ax, names: list[str], parts: dict[str, list[float]], colours: dict[str, str]) -> None:
    bottom = np.zeros(len(names))
    for key, values in parts.items():
        ax.bar(names, values, bottom=bottom, label=key, color=colours[key], edgecolor="black", linewidth=0.4)
        bottom += np.asarray(values, float)


def _layer_bars(names: list[str], parts: dict[str, list[float]], top: float, ylabel: str, title: str):
    """One stacked bar of factor shares per layer (the bias reports' figure)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2.5, 3.6))
    _stacked(ax, names, parts, FACTOR_COLOURS)
    ax.set_ylim(0, top)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig, ax


def bias_layers(report: dict, path: Path) -> Path:
    """Per layer: the dynamic / static / residual shares (the reference's percentages), raw scores on top."""
    layers = report["layers"]
    names = list(layers)
    shares = {k: [layers[n]["percent"][k] for n in names] for k in ("dynamic", "static", "residual")}
    fig, ax = _layer_bars(names, shares, 112, "% of the layer's dimensions",
                          "static vs dynamic (raw s_dyn/s_stat above the bars)")
    for i, n in enumerate(names):
        s = layers[n]["scores"]
        ax.text(i, 101, f"{s['dynamic']:.2f}/{s['static']:.2f}", ha="center", va="bottom", fontsize=7)
    return _save(fig, path)


def bias_units(report: dict, path: Path) -> Path:
    """Per layer: the fractions of channels labelled dynamic / static / joint / residual / undecided."""
    layers = report["layers"]
    names = list(layers)
    fig, _ = _layer_bars(names, {k: [layers[n]["unit_percent"][k] for n in names] for k in FACTOR_COLOURS}, 100,
                         "% of channels", f"unit labels (threshold {report['threshold']})")
    return _save(fig, path)


def bias_channels(report: dict, path: Path) -> Path:
    """Per layer: histograms of the channels' r_dyn and r_stat, the threshold marked."""
    plt = _pyplot()
    layers = report["layers"]
    fig, axes = plt.subplots(1, len(layers), figsize=(2.8 * len(layers) + 0.5, 2.8), squeeze=False)
    bins = np.linspace(-1, 1, 41)
    for ax, (name, r) in zip(axes[0], layers.items()):
        for key, colour in (("r_dynamic", "tab:red"), ("r_static", "tab:blue")):
            values = np.asarray([v for v in r[key] if v is not None], float)
            ax.hist(np.clip(values, -1, 1), bins=bins, alpha=0.55, color=colour, label=key)
        ax.axvline(report["threshold"], color="black", lw=0.8, ls="--")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("per-channel correlation", fontsize=8)
    axes[0, 0].set_ylabel("channels")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def bias_history(history: list[dict], path: Path) -> Path:
    """s_dyn and s_stat of every measured layer against the training step (analysis.bias_every)."""
    plt = _pyplot()
    names = list(history[0]["report"]["layers"])
    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, len(names), figsize=(2.8 * len(names) + 0.5, 2.8), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names):
        for factor, colour in (("dynamic", "tab:red"), ("static", "tab:blue")):
            ax.plot(steps, [h["report"]["layers"][name]["scores"][factor] for h in history], color=colour,
                    marker=".", label=f"s_{factor}")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def fusion_marginals(report: dict, path: Path) -> Path:
    """Per gated layer: the marginal probabilities of its unit types (S, ST, S+ST, none) as stacked bars."""
    plt = _pyplot()
    layers = report["layers"]
    names = [str(layer["layer"]) for layer in layers]
    fig, ax = plt.subplots(figsize=(0.6 * len(names) + 2.8, 3.4))
    _stacked(ax, names, {u: [layer["marginals"][u] for layer in layers] for u in UNIT_COLOURS}, UNIT_COLOURS)
    ax.set_ylim(0, 1)
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("marginal probability")
    ax.set_title("unit marginals from 1 − √p (independent branches: an inference)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def subnet_accuracy(samples: list[dict], path: Path) -> Path:
    """Each sampled sub-network: its validation accuracy against the share of its layers with a temporal
    branch (ST or S+ST), coloured by its log probability under the learned rates."""
    plt = _pyplot()
    x = [s["temporal_share"] for s in samples]
    y = [s["accuracy"] for s in samples]
    c = [s["log_prob"] for s in samples]
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    sc = ax.scatter(x, y, c=c, cmap="viridis", edgecolor="black", linewidth=0.4)
    fig.colorbar(sc, ax=ax, label="log P(sub-network)")
    ax.set_xlabel("share of layers with an ST branch")
    ax.set_ylabel("validation accuracy (no retraining)")
    ax.set_ylim(-0.02, 1.02)
    fig.tight_layout()
    return _save(fig, path)
