"""Normalisation policy for per-frame backbones.

BatchNorm computes its statistics over the batch, and a batch of a video model holds consecutive frames of a
few videos: a frame's output then depends on later frames (it "sees the future", which is cheating for online
tasks and anticipation) and on the other videos of the batch (Rivoir et al., On the Pitfalls of Batch
Normalization for End-to-End Video Learning). The other policies make each frame's output its own.
"""
from __future__ import annotations

from torch import nn
from torchvision.ops import FrozenBatchNorm2d

POLICIES = ("bn", "frozen_bn", "gn", "ln", "none")

LEAK_EXPLANATION = (
    "the model has trainable BatchNorm layers: in training their statistics mix the frames of a batch, so a "
    "frame's output depends on later frames and on other videos (a leak of future information). Use "
    "model.norm=gn (GroupNorm), ln (LayerNorm over channels and space), frozen_bn (pretrained statistics, "
    "frozen) or none, or set model.allow_batchnorm=true if you accept the leak")


def gn_groups(channels: int, max_groups: int = 32) -> int:
    """Largest divisor of `channels` not above max_groups (32 as in Wu & He)."""
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


def _replacement(bn: nn.BatchNorm2d, policy: str) -> nn.Module:
    c = bn.num_features
    if policy == "none":
        return nn.Identity()
    if policy == "frozen_bn":
        frozen = FrozenBatchNorm2d(c, eps=bn.eps)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(frozen, name).copy_(getattr(bn, name).detach())
        return frozen
    norm = nn.GroupNorm(1 if policy == "ln" else gn_groups(c), c, eps=bn.eps)
    norm.weight.data.copy_(bn.weight.detach())  # keep the (possibly pretrained) affine parameters
    norm.bias.data.copy_(bn.bias.detach())
    return norm


def convert_norm(module: nn.Module, policy: str) -> nn.Module:
    """Replace every BatchNorm2d of `module` according to policy (in place; returns module)."""
    if policy not in POLICIES:
        raise ValueError(f"norm policy {policy!r}: choose one of {POLICIES}")
    if policy == "bn":
        return module
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _replacement(child, policy))
        else:
            convert_norm(child, policy)
    return module


def trainable_batchnorm(module: nn.Module) -> list[str]:
    return [name for name, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def refuse_batchnorm(module: nn.Module, allow: bool) -> None:
    found = trainable_batchnorm(module)
    if found and not allow:
        raise ValueError(f"{LEAK_EXPLANATION} (found {len(found)}, e.g. {found[0]})")
