"""Build any registered backbone (framework/models/backbones/) under a normalisation policy (norm.py), with
pretrained weights (weights.py), stage freezing and activation checkpointing (staged.py).

Order: the network is built randomly initialised with its BatchNorm, converted by the norm policy, refused
if trainable BatchNorm is left and not allowed, then the weights are loaded (they must fit the converted
network: weights.py), and the network is described as stages.
"""
from __future__ import annotations

from .backbones import find
from .backbones.torchvision_resnet import TorchvisionResNet
from .norm import convert_norm, describe_policy, refuse_batchnorm
from .staged import StagedBackbone
from .weights import load_weights, read_weights

RESNETS = TorchvisionResNet.names  # kept for callers of the ResNet-only API


def build_backbone(name: str, norm: str = "gn", pretrained: str | None = None, allow_batchnorm: bool = False,
                   drop_path: float | None = None, options: dict | None = None,
                   **staged) -> tuple[StagedBackbone, int]:
    """`name`'s backbone as a StagedBackbone (keyword arguments: feature_dropout, freeze_stages,
    checkpointing). drop_path: the drop-path rate (None: the model's default); options: more constructor
    arguments (model.backbone_kwargs). Returns (module, feature dimension)."""
    family = find(name)
    kwargs = constructor_kwargs(family, name, drop_path, options)
    created = family.create(name, kwargs)
    statement = describe_policy(created.net, norm, name)
    convert_norm(created.net, norm)
    refuse_batchnorm(created.net, allow_batchnorm)
    if pretrained:
        state = family.hub_weights(name, pretrained, kwargs)
        load_weights(created.net, read_weights(pretrained) if state is None else state, pretrained, name,
                     ignored_prefixes=created.classifier, expected_leftovers=tuple(created.net.norm_dropped_keys))
    layout = family.layout(name, created)
    layout.notes += [statement] if statement else []
    return StagedBackbone(layout, **staged), layout.dim


def constructor_kwargs(family, name: str, drop_path: float | None, options: dict | None) -> dict:
    """model.backbone_kwargs (lists as tuples: torchvision wants tuples for sizes) plus the drop-path rate
    under the family's own argument name."""
    from ..config import ConfigError

    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in (options or {}).items()}
    if drop_path is not None:
        argument = family.drop_path_argument(name)
        if argument is None and drop_path > 0:
            raise ConfigError(f"model.drop_path={drop_path}: {name} has no drop-path (stochastic depth)")
        if argument is not None:
            kwargs[argument] = drop_path
    return kwargs
