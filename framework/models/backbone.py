"""Per-frame CNN backbones (torchvision ResNets) under a normalisation policy (see norm.py), with stage
freezing and activation checkpointing (see staged.py)."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from .norm import convert_norm, refuse_batchnorm
from .staged import StagedResNet

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")


def build_backbone(name: str, norm: str = "gn", pretrained: str | None = None, allow_batchnorm: bool = False,
                   **staged) -> tuple[StagedResNet, int]:
    """A torchvision ResNet, its BatchNorm converted by the norm policy, classifier removed, as a
    StagedResNet (keyword arguments: feature_dropout, freeze_stages, checkpointing). Returns (module, dim).
    Built with BatchNorm first so that pretrained BN weights and statistics load; the conversion then keeps
    them (affine for gn/ln, affine and statistics for frozen_bn)."""
    import torchvision

    if name not in RESNETS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {RESNETS}")
    net = getattr(torchvision.models, name)(weights=None)
    if pretrained:
        load_pretrained(net, pretrained)
    convert_norm(net, norm)
    refuse_batchnorm(net, allow_batchnorm)
    return StagedResNet(net, **staged), net.fc.in_features


def load_pretrained(net: nn.Module, source: str) -> None:
    """Load weights from a local file (a state_dict, or a checkpoint with a 'state_dict'/'model' entry) or,
    for users with internet, from torchvision's hub as `torchvision:<WEIGHTS_ENUM>` (e.g.
    `torchvision:ResNet50_Weights.IMAGENET1K_V2`). Weights and BN statistics load into the BN layers,
    before the norm policy converts them."""
    if source.startswith("torchvision:"):
        import torchvision

        state = torchvision.models.get_weight(source.split(":", 1)[1]).get_state_dict(progress=True)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights {path} not found")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state.get("model", state))
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(usable, strict=False)
    skipped = sorted(set(state) - set(usable))
    if len(usable) < math.ceil(0.5 * len(own)):
        raise ValueError(f"pretrained weights {source} match only {len(usable)}/{len(own)} tensors")
    if skipped:
        print(f"pretrained: loaded {len(usable)} tensors, skipped {len(skipped)} (e.g. {skipped[:3]})")
