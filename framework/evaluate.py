"""Online (causal) evaluation over whole videos: frames stream in order, the head's state is carried."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from .models.heads import detach_state


@dataclass
class EvalResult:
    metrics: dict
    labels: list[str]
    videos: dict = field(default_factory=dict)  # video id -> (labels [N], predictions [N])


@torch.no_grad()
def predict(model, loader, device) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per manifest video index: (labels, predictions) over all its frames, in order."""
    was_training = model.training
    model.eval()
    state = model.initial_state(loader.batch_size, device=device)
    out: dict[int, list] = {}
    for batch in loader:
        batch = batch.to(device)
        logits, state = model(batch.frames, state, batch.starts)
        state = detach_state(state)
        pred = logits.argmax(-1).cpu()
        for b in range(loader.batch_size):
            v = int(batch.video[b])
            if v >= 0:
                n = int(batch.valid[b].sum())
                out.setdefault(v, []).append((batch.labels[b, :n].cpu().numpy(), pred[b, :n].numpy()))
    model.train(was_training)
    return {v: tuple(np.concatenate(parts) for parts in zip(*chunks)) for v, chunks in out.items()}


def gather(local: dict) -> dict:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return local
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    return {k: v for p in parts for k, v in p.items()}


def frame_metrics(videos: dict, num_classes: int) -> dict:
    labels = np.concatenate([lab for lab, _ in videos.values()])
    preds = np.concatenate([p for _, p in videos.values()])
    f1 = []
    for c in range(num_classes):
        tp = np.sum((preds == c) & (labels == c))
        denom = np.sum(preds == c) + np.sum(labels == c)
        if np.sum(labels == c):
            f1.append(2 * tp / denom)
    return {
        "accuracy": float(np.mean(labels == preds)),  # over all frames
        "video_accuracy": float(np.mean([np.mean(lab == p) for lab, p in videos.values()])),  # Cholec80 style
        "macro_f1": float(np.mean(f1)),
        "frames": int(labels.size),
        "videos": len(videos),
    }


def evaluate(model, loader, device) -> EvalResult:
    videos = gather(predict(model, loader, device))
    named = {loader.videos[v].id: lp for v, lp in sorted(videos.items())}
    labels = loader.manifest.labels
    return EvalResult(frame_metrics(videos, len(labels)), labels, named)


def timeline_plot(result: EvalResult, path, max_videos: int = 8) -> None:
    """Ground truth above prediction for each video: where the eye finds the errors at once."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = list(result.videos.items())[:max_videos]
    fig, axes = plt.subplots(len(items), 1, figsize=(10, 0.9 * len(items) + 0.8), squeeze=False)
    cmap = plt.get_cmap("tab10", len(result.labels))
    for ax, (vid, (lab, pred)) in zip(axes[:, 0], items):
        ax.imshow(np.stack([lab, pred]), aspect="auto", cmap=cmap, vmin=0, vmax=len(result.labels) - 1,
                  interpolation="nearest")
        ax.set_yticks([0, 1], ["truth", "pred"])
        ax.set_ylabel(vid, rotation=0, ha="right", va="center")
        ax.set_xticks([])
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(len(result.labels))]
    fig.legend(handles, result.labels, loc="lower center", ncol=len(result.labels), frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
