"""What a backbone family is: one file per family, registered in framework/models/backbones/__init__.py.

A family knows the names it serves, builds a network for a name (randomly initialised, never downloading),
and describes the network as a `Layout` (framework/models/staged.py) once the norm policy converted it. What
the config must check before anything is built (stage count, temporal stride, drop-path support) it knows
from the name alone, where it can.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..staged import Layout


@dataclass
class Created:
    net: nn.Module  # classifier replaced by Identity
    dim: int  # feature dimension
    classifier: tuple[str, ...]  # state-dict key prefixes of the removed classifier (never loaded)


class Family:
    names: tuple[str, ...] = ()
    video = False  # takes clips

    def serves(self, name: str) -> bool:
        return name in self.names

    def known(self, name: str) -> bool:
        """For a name this family serves: does it exist (timm: is it a timm model)?"""
        return True

    def candidates(self) -> list[str]:
        """Names offered as close matches for a mistyped one."""
        return list(self.names)

    def stages(self, name: str) -> tuple[int, str] | None:
        """(number of stages, what they are) if known without building, else None."""
        return None

    def temporal_stride(self, name: str) -> int:
        return 1

    def drop_path_argument(self, name: str) -> str | None:
        """The constructor argument that sets the drop-path (stochastic depth) rate, None if there is none."""
        return None

    def check_kwargs(self, name: str, kwargs: dict) -> None:
        """One-line ConfigErrors for model.backbone_kwargs this family can check before building."""
        return None

    def create(self, name: str, kwargs: dict) -> Created:
        raise NotImplementedError

    def layout(self, name: str, created: Created) -> Layout:
        raise NotImplementedError

    def hub_weights(self, name: str, source: str, kwargs: dict):
        """A state dict for a source only this family reads (timm's hub), or None."""
        return None


def replace_classifier(parent: nn.Module, attr: str) -> int:
    """Replace parent.<attr> (a Linear or 1×1×1 conv classifier) by Identity; returns its input width."""
    layer = getattr(parent, attr)
    width = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
    setattr(parent, attr, nn.Identity())
    return width


def blocks_of(stage: nn.Module) -> list[nn.Module]:
    """A stage's units for block checkpointing: the children of a Sequential, else the stage whole."""
    return list(stage) if isinstance(stage, nn.Sequential) else [stage]
