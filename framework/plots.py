"""The plots of the reports: where the eye finds the errors at once. Each function writes one PNG and
returns its path; none needs a display (Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_VIDEOS = 8


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def phase_ribbons(results, labels: list[str], path: Path) -> Path:
    """Ground truth above prediction for each video (unlabeled frames white)."""
    plt = _pyplot()
    items = results[:MAX_VIDEOS]
    fig, axes = plt.subplots(len(items), 1, figsize=(10, 0.9 * len(items) + 0.8), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20", len(labels))
    cmap.set_bad("white")
    for ax, r in zip(axes[:, 0], items):
        rows = np.ma.masked_less(np.stack([r.label, r.outputs.argmax(-1)]), 0)
        ax.imshow(rows, aspect="auto", cmap=cmap, vmin=0, vmax=len(labels) - 1, interpolation="nearest")
        ax.set_yticks([0, 1], ["truth", "pred"])
        ax.set_ylabel(r.video.id, rotation=0, ha="right", va="center")
        ax.set_xticks([])
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(len(labels))]
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return _save(fig, path)


def confusion_matrix(confusion: dict, path: Path) -> Path:
    """Row-normalised (recall per true class), the counts written in each cell."""
    plt = _pyplot()
    labels, cm = confusion["labels"], np.asarray(confusion["rows_true_columns_predicted"], np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = 1.6 + 0.6 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    fig.tight_layout()
    return _save(fig, path)


def presence_ribbons(curves, names: list[str], path: Path) -> Path:
    """curves: (video id, times, targets [N, K], probabilities [N, K]); per video: truth and probability."""
    plt = _pyplot()
    items = curves[:MAX_VIDEOS]
    fig, axes = plt.subplots(len(items), 1, figsize=(10, (0.25 * len(names) + 0.4) * 2 * len(items) + 0.5),
                             squeeze=False)
    for ax, (vid, _, target, prob) in zip(axes[:, 0], items):
        rows = np.concatenate([np.ma.masked_less(target.T.astype(float), 0), prob.T])
        ax.imshow(rows, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks(range(2 * len(names)), [f"{n} truth" for n in names] + [f"{n} prob" for n in names],
                      fontsize=7)
        ax.set_title(vid, fontsize=9, loc="left")
        ax.set_xticks([])
    fig.tight_layout()
    return _save(fig, path)


def anticipation_curves(curves, names: list[str], horizon: float, path: Path) -> Path:
    """curves: (video id, times s, target minutes [N, K], predicted minutes [N, K]); one panel per video and
    instrument: the true time to next use (clipped at the horizon) and the prediction."""
    plt = _pyplot()
    items = curves[:min(MAX_VIDEOS, 4)]
    fig, axes = plt.subplots(len(items), len(names), figsize=(3.2 * len(names), 2.0 * len(items)), squeeze=False,
                             sharey=True)
    for row, (vid, t, target, pred) in zip(axes, items):
        for k, ax in enumerate(row):
            ax.plot(t / 60, target[:, k], color="black", lw=1.2, label="true")
            ax.plot(t / 60, pred[:, k], color="tab:orange", lw=0.9, label="predicted")
            ax.set_ylim(-0.05 * horizon, 1.15 * horizon)
            ax.set_title(f"{vid} · {names[k]}", fontsize=8)
    axes[-1, 0].set_xlabel("video time (min)")
    axes[0, 0].set_ylabel("minutes to next use")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def segments(results, gt: dict, detections, classes: list[str], path: Path, top: int = 10) -> Path:
    """Per video: the ground-truth segments (top row) and the `top` highest-scored detections below them, one
    row each, coloured by class, more opaque the higher the score."""
    plt = _pyplot()
    items = results[:MAX_VIDEOS]
    fig, axes = plt.subplots(len(items), 1, figsize=(10, 1.6 * len(items) + 0.8), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20", len(classes))
    colour = {c: cmap(i) for i, c in enumerate(classes)}
    for ax, r in zip(axes[:, 0], items):
        vid = r.video.id
        for s, e, label in gt.get(vid, []):
            ax.broken_barh([(s, e - s)], (top + 0.6, 1.0), color=colour.get(label, "black"))
        mine = sorted((d for d in detections if d.video == vid), key=lambda d: -d.score)[:top]
        for row, d in enumerate(mine):
            ax.broken_barh([(d.start, d.end - d.start)], (top - 1 - row + 0.1, 0.8), color=colour[d.label],
                           alpha=float(np.clip(0.25 + 0.75 * d.score, 0, 1)))
        ax.set_ylim(0, top + 1.8)
        ax.set_yticks([top + 1.1, top / 2], ["truth", f"top {len(mine)}"])
        ax.set_xlim(0, r.video.duration or r.video.num_frames / max(r.video.fps, 1e-9))
        ax.set_title(vid, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("seconds")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[c]) for c in classes]
    fig.legend(handles, classes, loc="lower center", ncol=min(len(classes), 7), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, path)
