"""A ResNet as a list of stages [stem, layer1, layer2, layer3, layer4], for memory control on long sequences.

Frozen stages (freeze_stages=k) run under no_grad: no gradients and, as important for thousands of frames,
no stored activations. The trainable rest runs as checkpointed segments (DeepSpeed's activation
checkpointing): only each segment's input is kept in the forward, the inside is recomputed in the backward.
The caller (VideoModel) feeds one frame micro-chunk at a time, so the recomputation's peak is one micro-chunk.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

# ImageNet statistics: the right ones for torchvision weights and harmless from scratch
_MEAN = torch.tensor([0.485, 0.456, 0.406]) * 255
_STD = torch.tensor([0.229, 0.224, 0.225]) * 255

STAGES = (("conv1", "bn1", "relu", "maxpool"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))


class StagedResNet(nn.Module):
    def __init__(self, net: nn.Module, feature_dropout: float = 0.0, freeze_stages: int = 0,
                 checkpointing=None):
        super().__init__()
        for name in [n for stage in STAGES for n in stage]:  # torchvision's names: its state dicts still load
            setattr(self, name, getattr(net, name))
        self.avgpool = net.avgpool
        self.dropout = nn.Dropout(feature_dropout)
        self.register_buffer("mean", _MEAN.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", _STD.view(1, 3, 1, 1), persistent=False)
        self.freeze_stages = freeze_stages
        self.granularity = getattr(checkpointing, "granularity", "none")
        self.every = getattr(checkpointing, "every", 1)
        for p in self.frozen_parameters():
            p.requires_grad_(False)

    # -- structure ----------------------------------------------------------------------------
    def stage_modules(self, stage: int) -> list[nn.Module]:
        return [getattr(self, n) for n in STAGES[stage]]

    def frozen_parameters(self):
        return [p for s in range(self.freeze_stages) for m in self.stage_modules(s) for p in m.parameters()]

    def units(self) -> list[tuple[int, Callable]]:
        """(stage, function) for the stem and for every residual block, in order."""
        return [(0, self._stem)] + [(s, block) for s in range(1, 5) for block in self.stage_modules(s)[0]]

    def _stem(self, frames: torch.Tensor) -> torch.Tensor:
        # uint8 frames in, so that a checkpoint of the first segment keeps 1 byte per pixel, not 4
        x = frames.permute(0, 3, 1, 2).float()
        x = ((x - self.mean) / self.std).to(self.conv1.weight.dtype)
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.flatten(self.avgpool(x), 1))

    def train(self, mode: bool = True):
        super().train(mode)
        for s in range(self.freeze_stages):  # frozen means frozen: no BatchNorm statistics updates either
            for m in self.stage_modules(s):
                m.eval()
        return self

    # -- forward ------------------------------------------------------------------------------
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames [N, H, W, 3] → features [N, D]."""
        units = self.units()
        frozen = sum(1 for s, _ in units if s < self.freeze_stages)
        x = frames
        with torch.no_grad():
            for _, f in units[:frozen]:
                x = f(x)
        trainable = units[frozen:] + [(4, self._pool)]
        checkpointed = self.granularity != "none" and torch.is_grad_enabled()
        for segment in self.segments(trainable) if checkpointed else [[f for _, f in trainable]]:
            x = checkpoint(run_all(segment), x) if checkpointed else run_all(segment)(x)
        return x

    def segments(self, trainable: list[tuple[int, Callable]]) -> list[list[Callable]]:
        """Trainable units grouped into checkpointed segments by the granularity."""
        if self.granularity == "backbone":
            return [[f for _, f in trainable]]
        if self.granularity == "blocks":
            k = self.every
            return [[f for _, f in trainable[i:i + k]] for i in range(0, len(trainable), k)]
        by_stage: dict[int, list[Callable]] = {}  # "stage": one segment per stage; the pool goes with the last
        for s, f in trainable:
            by_stage.setdefault(s, []).append(f)
        return list(by_stage.values())


def run_all(functions: list[Callable]) -> Callable:
    def run(x):
        for f in functions:
            x = f(x)
        return x
    return run


def checkpoint(function: Callable, x: torch.Tensor) -> torch.Tensor:
    """DeepSpeed's (reentrant) activation checkpoint, which replays the RNG in the recomputation so dropout
    masks match. Reentrant checkpoints only pass gradients to the segment's parameters when an input needs a
    gradient, and the first trainable segment's input (uint8 frames, or frozen stages' output) does not:
    a constant that requires grad is passed along to make the segment part of the graph.
    Why not DeepSpeed's non_reentrant_checkpoint: it holds more memory per frame at the same boundaries
    (`python -m bench.activation_memory` measures both; docs/BENCHMARKS.md has the figures)."""
    import deepspeed

    return deepspeed.checkpointing.checkpoint(_with_anchor(function), x, _ANCHOR)


_ANCHOR = torch.ones((), requires_grad=True)


def _with_anchor(function: Callable) -> Callable:
    def run(x, anchor):
        return function(x)
    return run


def configure_checkpointing(cfg, device: str) -> None:
    """Process-wide DeepSpeed setting; needs torch.distributed initialised (the trainer's case).
    Offloading to host memory only means something when activations live on an accelerator; on a CPU run it
    is skipped (DeepSpeed's blocking offload path empties the CPU tensors it means to copy back, and the
    recomputation then fails)."""
    if cfg.granularity != "none" and cfg.cpu_offload and not str(device).startswith("cpu"):
        import deepspeed

        deepspeed.checkpointing.configure(None, checkpoint_in_cpu=True)
