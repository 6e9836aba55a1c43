"""Features of chosen layers (backbone stages) of any VideoModel, average-pooled over time and space: one
C-vector per clip, as Kowal et al. read a res-stage output (global average pooling over T×H×W; token models:
the mean over all tokens, class token included).

Layers are stage indices of the backbone (`StagedBackbone.num_stages`; a ResNet's are the stem and
layer1..layer4 → 0..4). They are read through the backbone's stage taps, so the model runs exactly as it
trains (micro-chunks, clips of model.clip_len); a 2D backbone's per-frame maps are pooled over space, then over
the frames of the clip; a 3D backbone's over T'×H×W of each clip, then over the clips of the sequence.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

# layouts whose maps are channels-last ([N, (T,) H, W, C]): torchvision's Swin and MViT's final grid, timm's Swin
_CHANNELS_LAST = ("swin3d", "mvit", "timm:swin")


def layer_names(backbone) -> list[str]:
    """'stage k' labels, for tables and plots."""
    return [f"stage{k}" for k in range(backbone.num_stages)]


def check_layers(backbone, layers) -> list[int]:
    """Layers as stage indices (negative ones count from the end; None: every stage); one-line errors."""
    n = backbone.num_stages
    if layers is None or len(layers) == 0:
        return list(range(n))
    out = []
    for layer in layers:
        k = int(layer)
        if not -n <= k < n:
            raise ValueError(f"layer {layer}: this backbone has stages 0..{n - 1} ({backbone.layout.description})")
        out.append(k % n)
    return sorted(set(out))


def channel_axis(x: torch.Tensor, channels_last: bool) -> int:
    """Where a stage output keeps its channels: tokens [N, L, C] and channels-last maps at the end, else 1."""
    return -1 if x.ndim == 3 or channels_last else 1


def pool(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A stage output → [N, C]: the mean over every axis but the sample and channel axes."""
    axis = channel_axis(x, channels_last) % x.ndim
    return x.float().mean(dim=[d for d in range(1, x.ndim) if d != axis])


def is_channels_last(backbone_name: str) -> bool:
    return backbone_name.startswith(_CHANNELS_LAST)


@contextmanager
def recording(backbone, layers: list[int], channels_last: bool):
    """Inside the block, every backbone call appends each layer's pooled output [n, C] to records[layer]."""
    records: dict[int, list[torch.Tensor]] = {k: [] for k in layers}
    taps = {}
    for k in layers:
        def tap(x, k=k):
            records[k].append(pool(x, channels_last))
            return x
        taps[k] = tap
        backbone.taps.setdefault(k, []).append(tap)
    try:
        yield records
    finally:
        for k, tap in taps.items():
            backbone.taps[k].remove(tap)


@torch.no_grad()
def clip_layer_features(model, frames: torch.Tensor, layers: list[int], channels_last: bool = False
                        ) -> dict[int, torch.Tensor]:
    """uint8 clips [B, T, H, W, 3] → {layer: [B, C]} pooled over time and space (eval mode, no gradient)."""
    was_training = model.training
    model.eval()
    try:
        with recording(model.backbone, layers, channels_last) as records:
            model.features(frames)
    finally:
        model.train(was_training)
    B = frames.shape[0]
    out = {}
    for k, parts in records.items():
        rows = torch.cat(parts)  # frames (2D backbone) or clips (3D), in order: B equal groups of them
        out[k] = rows.view(B, -1, rows.shape[-1]).mean(1)
    return out
