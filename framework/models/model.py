"""Backbone (2D per frame or 3D per clip) + stateful temporal head."""
from __future__ import annotations

import os

import torch
from torch import nn

from .backbone import build_backbone
from .heads import HEADS


class VideoModel(nn.Module):
    def __init__(self, backbone: nn.Module, feat_dim: int, head: nn.Module, frame_chunk: int | None = None,
                 clip_len: int | None = None):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.feat_dim = feat_dim
        self.frame_chunk = frame_chunk  # frames per backbone call: bounds peak activation memory
        self.clip_len = clip_len  # video backbones: frames each clip holds (None: the whole sequence)

    @property
    def temporal_stride(self) -> int:
        """Input frames per feature step: 1 for a 2D backbone."""
        return getattr(self.backbone, "temporal_stride", 1)

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, H, W, 3] → features [B, T / temporal_stride, D]. A 2D backbone sees each frame on its
        own; a video backbone sees clips of clip_len consecutive frames, each clip on its own (no state
        crosses a clip boundary: framework/models/backbones/video3d.py)."""
        B, T = frames.shape[:2]
        if not getattr(self.backbone, "video", False):
            chunks = frames.flatten(0, 1).split(self.frame_chunk or B * T)
            return torch.cat([self.backbone(c) for c in chunks]).view(B, T, -1)
        clip = self.clip_len or T
        if T % clip:
            raise ValueError(f"{T} frames do not split into clips of model.clip_len={clip}")
        clips = frames.reshape(B * (T // clip), clip, *frames.shape[2:])
        per_call = max(1, (self.frame_chunk or B * T) // clip)
        steps = torch.cat([self.backbone(c) for c in clips.split(per_call)])  # [B·T/clip, clip/stride, D]
        return steps.reshape(B, -1, steps.shape[-1])

    def clip_features(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, H, W, 3] → one pooled feature per sequence [B, D]: the mean over its time steps (for
        a 2D backbone the per-frame features averaged, TSN style)."""
        return self.features(frames).mean(1)

    def initial_state(self, batch_size: int, device=None):
        dtype = next(self.head.parameters()).dtype
        return self.head.initial_state(batch_size, device=device, dtype=dtype)

    def forward(self, frames, state, reset):
        return self.head(self.features(frames), state, reset)


def build_model(cfg, num_classes: int) -> VideoModel:
    """cfg: a ModelConfig."""
    backbone, dim = build_backbone(cfg.backbone, cfg.norm, cfg.pretrained, cfg.allow_batchnorm, cfg.drop_path,
                                   cfg.backbone_kwargs, feature_dropout=cfg.feature_dropout,
                                   freeze_stages=cfg.freeze_stages, checkpointing=cfg.checkpointing)
    if int(os.environ.get("RANK", "0")) == 0:
        for note in backbone.layout.notes:
            print(f"backbone: {note}")
    head = HEADS[cfg.head](dim, num_classes, **head_options(cfg))
    return VideoModel(backbone, dim, head, cfg.frame_chunk, cfg.clip_len)


def check_model(cfg) -> None:
    """Build the backbone once, before any process group or DeepSpeed engine exists, when a mistake only a
    build can find is possible: a weights file that does not fit, or a stage count only known once a timm
    model is built. Raises ConfigError with its one-line message."""
    from .backbones import find

    hub = cfg.pretrained == "timm" or str(cfg.pretrained).startswith(("torchvision:", "timm:"))
    local_weights = bool(cfg.pretrained) and not hub
    stages_unknown = find(cfg.backbone).stages(cfg.backbone) is None
    if local_weights or (stages_unknown and cfg.freeze_stages > 1):  # every backbone has a first stage
        build_backbone(cfg.backbone, cfg.norm, cfg.pretrained if local_weights else None, cfg.allow_batchnorm,
                       cfg.drop_path, cfg.backbone_kwargs, freeze_stages=cfg.freeze_stages)


def head_options(cfg) -> dict:
    """The ModelConfig fields each head takes."""
    if cfg.head == "linear":
        return {"dropout": cfg.dropout}
    common = {"hidden": cfg.hidden, "layers": cfg.layers, "dropout": cfg.dropout}
    extra = {"tcn": {"stages": cfg.stages}, "transformer": {"heads": cfg.attention_heads, "window": cfg.window}}
    if cfg.head == "actionformer":
        extra["actionformer"] = {"levels": cfg.levels, "blocks": cfg.blocks, "heads": cfg.attention_heads,
                                 "window": cfg.window, "snippet": snippet_steps(cfg)}
    return {**common, **extra.get(cfg.head, {})}


def snippet_steps(cfg) -> tuple[int, int]:
    """model.snippet_len / snippet_stride (frames) in the backbone's time steps."""
    from .backbones import find

    stride = find(cfg.backbone).temporal_stride(cfg.backbone)
    return cfg.snippet_len // stride, cfg.snippet_stride // stride
