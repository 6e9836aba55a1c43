"""Any backbone as a list of stages, for memory control on long sequences.

A family (framework/models/backbones/) describes one network as a `Layout`: its stages (what `freeze_stages`
freezes and `checkpointing.granularity=stage` keeps the boundaries of), its units in execution order (the
blocks `granularity=blocks` checkpoints), how the last feature map is pooled, the feature dimension and the
temporal stride. `StagedBackbone` runs any layout the same way:
- uint8 input is converted and normalised inside the first unit, so a checkpoint of the first segment
  keeps 1 byte per pixel, not 4;
- frozen stages (the first `freeze_stages`) run under no_grad: no gradients and, as important for thousands
  of frames, no stored activations;
- the trainable rest runs as checkpointed segments (DeepSpeed's reentrant activation checkpointing): only
  each segment's input is kept in the forward, the inside is recomputed in the backward, with the RNG
  replayed so dropout and drop-path masks match.
The caller (VideoModel) feeds one micro-chunk at a time, so the recomputation's peak is one micro-chunk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

Unit = tuple[int, Callable]  # (stage index, function of the previous unit's output)


@dataclass
class Layout:
    """What a family says about one network (see the module docstring)."""
    net: nn.Module  # classifier removed; its children become the backbone's, names kept (its state dicts load)
    stages: list[list[nn.Module | nn.Parameter]]  # what each stage owns: frozen together
    # units(net): fresh unit functions for one forward call, in execution order; pool(net, x): the last output →
    # [N, D] (2D) or [N, T', D] (video). Functions of the net they are given, never closures over one: a deep
    # copy of the backbone (the leakage probe's) must run its own copy of the network
    units: Callable[[nn.Module], list[Unit]]
    pool: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    dim: int
    description: str  # what the stages are, for messages: "the stem and layer1..layer4"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # input statistics of the weights, on a 0–1 scale
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    video: bool = False  # input clips [N, T, H, W, 3] instead of frames [N, H, W, 3]
    temporal_stride: int = 1  # input frames per output time step (video)
    notes: list[str] = field(default_factory=list)  # statements for the user (e.g. a no-op norm policy)


class StagedBackbone(nn.Module):
    """The backbone contract: `stage_modules(s)`, `num_stages`, `dim`, `temporal_stride`, `video`, and
    forward(uint8 frames [N, H, W, 3]) → [N, D], or for a video backbone (uint8 clips [N, T, H, W, 3]) →
    [N, T / temporal_stride, D]."""

    def __init__(self, layout: Layout, feature_dropout: float = 0.0, freeze_stages: int = 0, checkpointing=None):
        from ..config import ConfigError

        super().__init__()
        if not 0 <= freeze_stages <= len(layout.stages):
            raise ConfigError(f"model.freeze_stages={freeze_stages}: 0 (none) to {len(layout.stages)} (the whole "
                              f"backbone), counting {layout.description}")
        self._adopt(layout.net)
        self.layout = layout
        self.dim, self.video, self.temporal_stride = layout.dim, layout.video, layout.temporal_stride
        # names of our own that no network uses at its top level (the dicts are shared with it)
        self.feature_dropout = nn.Dropout(feature_dropout)
        self.register_buffer("input_mean", torch.tensor(layout.mean).mul(255), persistent=False)
        self.register_buffer("input_std", torch.tensor(layout.std).mul(255), persistent=False)
        self.freeze_stages = freeze_stages
        # stage → functions applied to that stage's output, inside its unit (so inside a checkpointed segment:
        # recomputed with the RNG replayed). The analysis tools read layers and drop channels through them.
        self.taps: dict[int, list[Callable]] = {}
        self.granularity = getattr(checkpointing, "granularity", "none")
        self.every = getattr(checkpointing, "every", 1)
        _check_ownership(layout)
        for p in self.frozen_parameters():
            p.requires_grad_(False)

    def _adopt(self, net: nn.Module) -> None:
        """Become `net` for state dicts and devices: share its dicts of children, parameters and buffers, so
        keys are the network's own (torchvision/timm weights and earlier checkpoints load as they are) and
        whatever replaces a tensor (.to(), DeepSpeed, load_state_dict(assign=True)) replaces it for the
        network's own methods (timm's forward_head, ViT's _pos_embed) too."""
        self._modules, self._parameters, self._buffers = net._modules, net._parameters, net._buffers
        self._non_persistent_buffers_set = net._non_persistent_buffers_set
        self.__dict__["net"] = net  # not registered: its children already are, as ours

    # -- structure ----------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.layout.stages)

    def stage_modules(self, stage: int) -> list[nn.Module]:
        return [m for m in self.layout.stages[stage] if isinstance(m, nn.Module)]

    def frozen_parameters(self) -> list[nn.Parameter]:
        return [p for s in range(self.freeze_stages) for p in _parameters(self.layout.stages[s])]

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.training = mode  # the network's own methods read it (timm's forward_head dropout)
        for s in range(self.freeze_stages):  # frozen means frozen: no BatchNorm statistics updates either
            for m in self.stage_modules(s):
                m.eval()
        return self

    def units(self) -> list[Unit]:
        """(stage, function) in execution order; the first takes the uint8 input, the last pools."""
        units = _tapped(self.layout.units(self.net), self.taps)
        s0, first = units[0]
        last = self.num_stages - 1
        return [(s0, lambda x: first(self._prepare(x))), *units[1:], (last, self._pool)]

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8, channels last → normalised float in the parameters' dtype, N C (T) H W."""
        x = (x.float() - self.input_mean) / self.input_std  # broadcast over the last (channel) dimension
        x = x.permute(0, 4, 1, 2, 3) if self.video else x.permute(0, 3, 1, 2)
        return x.to(next(self.parameters()).dtype)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_dropout(self.layout.pool(self.net, x))

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        units = self.units()
        frozen = sum(1 for s, _ in units if s < self.freeze_stages)
        with torch.no_grad():
            for _, f in units[:frozen]:
                x = f(x)
        trainable = units[frozen:]
        checkpointed = self.granularity != "none" and torch.is_grad_enabled() and bool(trainable)
        for segment in self.segments(trainable) if checkpointed else [[f for _, f in trainable]]:
            x = checkpoint(run_all(segment), x) if checkpointed else run_all(segment)(x)
        return x

    def segments(self, trainable: list[Unit]) -> list[list[Callable]]:
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


def _tapped(units: list[Unit], taps: dict[int, list[Callable]]) -> list[Unit]:
    """The last unit of each tapped stage followed by its taps."""
    last = {s: i for i, (s, _) in enumerate(units)}
    out = list(units)
    for s, fs in taps.items():
        if fs and s in last:
            i = last[s]
            out[i] = (s, run_all([units[i][1], *fs]))
    return out


def _parameters(owned: list) -> list[nn.Parameter]:
    out = []
    for item in owned:
        out += [item] if isinstance(item, nn.Parameter) else list(item.parameters())
    return out


def _check_ownership(layout: Layout) -> None:
    """Every parameter in exactly one stage: a family that forgot one would leave it trainable under a full
    freeze (or freeze it twice)."""
    owned = [id(p) for s in layout.stages for p in _parameters(s)]
    every = {id(p): n for n, p in layout.net.named_parameters()}
    missing = [n for i, n in every.items() if i not in owned]
    twice = len(owned) - len(set(owned))
    if missing or twice:
        raise AssertionError(f"backbone layout: {len(missing)} parameters in no stage (e.g. {missing[:3]}), "
                             f"{twice} in two")


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
