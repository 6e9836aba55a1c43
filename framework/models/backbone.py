"""Per-frame CNN backbones without batch-dependent normalisation."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")


def gn_groups(channels: int, max_groups: int = 32) -> int:
    """Largest divisor of `channels` not above max_groups (32 as in Wu & He; 64-channel stems get 32)."""
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(gn_groups(channels), channels)


def build_backbone(name: str, norm: str = "gn", pretrained: str | None = None) -> tuple[nn.Module, int]:
    """A torchvision ResNet with GroupNorm instead of BatchNorm, classifier removed. Returns (module, dim)."""
    import torchvision

    if name not in RESNETS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {RESNETS}")
    norm_layer = {"gn": group_norm}[norm]
    net = getattr(torchvision.models, name)(weights=None, norm_layer=norm_layer)
    if pretrained:
        load_pretrained(net, pretrained)
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, dim


def load_pretrained(net: nn.Module, source: str) -> None:
    """Load weights from a local file (a state_dict, or a checkpoint with a 'state_dict'/'model' entry) or,
    for users with internet, from torchvision's hub as `torchvision:<WEIGHTS_ENUM>` (e.g.
    `torchvision:ResNet50_Weights.IMAGENET1K_V2`). BatchNorm running statistics have no place in a GN model
    and are skipped; BN affine weights map onto the GN affine weights of the same name."""
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
