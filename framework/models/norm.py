"""Normalisation policy for every backbone (2D per frame or 3D per clip).

BatchNorm computes its statistics over the batch, and a batch of a video model holds consecutive frames of a
few videos: a frame's output then depends on later frames (it "sees the future", which is cheating for online
tasks and anticipation) and on the other videos of the batch (Rivoir et al., On the Pitfalls of Batch
Normalization for End-to-End Video Learning). The other policies make each frame's (each clip's) output its own.

The policy replaces BatchNorm1d/2d/3d, SyncBatchNorm and timm's BatchNorm-with-activation layers
(BatchNormAct2d: the norm, then its `drop` and `act`). A backbone that normalises otherwise (ConvNeXt,
ViT, Swin and MViT with LayerNorm, GroupNorm ResNets, NFNet with none) is left as it is: there is nothing
batch-dependent to replace, and `describe_policy` says so.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from .norm_names import LEAK_EXPLANATION, POLICIES  # noqa: F401 (re-exported)

_PLAIN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.RMSNorm, FrozenBatchNorm2d)
_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def gn_groups(channels: int, max_groups: int = 32) -> int:
    """Largest divisor of `channels` not above max_groups (32 as in Wu & He)."""
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


class FrozenBatchNorm(FrozenBatchNorm2d):
    """torchvision's FrozenBatchNorm2d for inputs of any rank ([N, C], [N, C, L], [N, C, T, H, W]): the same
    buffers and state-dict keys, the affine map broadcast over every dimension after the channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return x * scale.view(shape) + (self.bias - self.running_mean * scale).view(shape)


class _WithAct(nn.Module):
    """Mixin for a replacement of timm's BatchNormAct: the norm, then the original layer's drop and act
    (kept as children `drop` and `act`, as timm names them, so state-dict keys do not move)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


class GroupNormAct(_WithAct, nn.GroupNorm):
    pass


class FrozenBatchNormAct(_WithAct, FrozenBatchNorm):
    pass


def _has_act(bn: nn.Module) -> bool:
    return isinstance(getattr(bn, "act", None), nn.Module) and isinstance(getattr(bn, "drop", None), nn.Module)


def _replacement(bn: nn.modules.batchnorm._BatchNorm, policy: str) -> nn.Module:
    with_act = _has_act(bn)
    if not with_act and type(bn) not in _PLAIN:  # a subclass may normalise otherwise: never guess
        raise ValueError(f"model.norm={policy}: cannot convert {type(bn).__name__}, a BatchNorm variant whose "
                         "forward is unknown; use model.norm=bn with model.allow_batchnorm=true")
    c = bn.num_features
    if policy == "none":
        return nn.Sequential(bn.drop, bn.act) if with_act else nn.Identity()
    if policy == "frozen_bn":
        frozen = (FrozenBatchNormAct if with_act else FrozenBatchNorm)(c, eps=bn.eps)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(frozen, name).copy_(getattr(bn, name).detach())
        norm = frozen
    else:
        norm = (GroupNormAct if with_act else nn.GroupNorm)(1 if policy == "ln" else gn_groups(c), c, eps=bn.eps)
        norm.weight.data.copy_(bn.weight.detach())  # keep the (possibly pretrained) affine parameters
        norm.bias.data.copy_(bn.bias.detach())
    if with_act:
        norm.drop, norm.act = bn.drop, bn.act
    return norm


def dropped_keys(policy: str, name: str) -> list[str]:
    """State-dict keys of the BatchNorm `name` that have no place after the conversion: weights files written
    for the BatchNorm model carry them, and loading them under this policy has nothing to put them in."""
    prefix = f"{name}." if name else ""
    keys = {"frozen_bn": ("num_batches_tracked",), "gn": _STATISTICS, "ln": _STATISTICS,
            "none": ("weight", "bias") + _STATISTICS}[policy]
    return [prefix + k for k in keys]


def convert_norm(module: nn.Module, policy: str, _prefix: str = "", _dropped: list | None = None) -> nn.Module:
    """Replace every BatchNorm of `module` according to policy (in place; returns module). The keys the
    conversion makes obsolete are collected on `module.norm_dropped_keys` (for the weights loader)."""
    if policy not in POLICIES:
        raise ValueError(f"norm policy {policy!r}: choose one of {POLICIES}")
    dropped = [] if _dropped is None else _dropped
    if policy != "bn":
        for name, child in module.named_children():
            path = f"{_prefix}{name}"
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, _replacement(child, policy))
                dropped += dropped_keys(policy, path)
            else:
                convert_norm(child, policy, f"{path}.", dropped)
    if _dropped is None:
        module.norm_dropped_keys = dropped
    return module


def trainable_batchnorm(module: nn.Module) -> list[str]:
    return [name for name, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def refuse_batchnorm(module: nn.Module, allow: bool) -> None:
    found = trainable_batchnorm(module)
    if found and not allow:
        raise ValueError(f"{LEAK_EXPLANATION} (found {len(found)}, e.g. {found[0]})")


def norm_layers(module: nn.Module) -> dict[str, int]:
    """How many normalisation layers of each kind the module has (for the policy statement)."""
    kinds: dict[str, int] = {}
    for m in module.modules():
        name = type(m).__name__
        if isinstance(m, _NORMS) or name.endswith(("Norm", "Norm1d", "Norm2d", "Norm3d")):
            kinds[name] = kinds.get(name, 0) + 1
    return kinds


def describe_policy(module: nn.Module, policy: str, backbone: str) -> str | None:
    """A one-line statement when the policy changes nothing, because the backbone has no BatchNorm.
    Call before converting."""
    if policy == "bn" or trainable_batchnorm(module):
        return None
    own = ", ".join(f"{n} {k}" for k, n in sorted(norm_layers(module).items()))
    kept = f"it keeps its own normalisation ({own}), which is per sample" if own else "it has no normalisation layers"
    return f"model.norm={policy}: {backbone} has no BatchNorm, so nothing is converted; {kept} and mixes no frames"
