"""Backbone per frame + stateful temporal head."""
from __future__ import annotations

import torch
from torch import nn

from .backbone import build_backbone
from .heads import HEADS

class VideoModel(nn.Module):
    def __init__(self, backbone: nn.Module, feat_dim: int, head: nn.Module, frame_chunk: int | None = None):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.feat_dim = feat_dim
        self.frame_chunk = frame_chunk  # frames per backbone call: bounds peak activation memory

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, H, W, 3] → features [B, T, D]; the backbone sees each frame on its own."""
        B, T = frames.shape[:2]
        chunks = frames.flatten(0, 1).split(self.frame_chunk or B * T)
        return torch.cat([self.backbone(c) for c in chunks]).view(B, T, -1)

    def initial_state(self, batch_size: int, device=None):
        dtype = next(self.head.parameters()).dtype
        return self.head.initial_state(batch_size, device=device, dtype=dtype)

    def forward(self, frames, state, reset):
        return self.head(self.features(frames), state, reset)


def build_model(cfg, num_classes: int) -> VideoModel:
    """cfg: a ModelConfig."""
    backbone, dim = build_backbone(cfg.backbone, cfg.norm, cfg.pretrained, cfg.allow_batchnorm,
                                   feature_dropout=cfg.feature_dropout, freeze_stages=cfg.freeze_stages,
                                   checkpointing=cfg.checkpointing)
    head = HEADS[cfg.head](dim, num_classes, **head_options(cfg))
    return VideoModel(backbone, dim, head, cfg.frame_chunk)


def head_options(cfg) -> dict:
    """The ModelConfig fields each head takes."""
    if cfg.head == "linear":
        return {"dropout": cfg.dropout}
    common = {"hidden": cfg.hidden, "layers": cfg.layers, "dropout": cfg.dropout}
    extra = {"tcn": {"stages": cfg.stages}, "transformer": {"heads": cfg.attention_heads, "window": cfg.window}}
    return {**common, **extra.get(cfg.head, {})}
