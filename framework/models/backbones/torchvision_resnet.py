"""torchvision ResNets (ImageNet BatchNorm models: the norm policy converts them)."""
from __future__ import annotations

import torch

from ..staged import Layout
from .base import Created, Family, replace_classifier

LAYERS = ("layer1", "layer2", "layer3", "layer4")


class TorchvisionResNet(Family):
    names = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")

    def stages(self, name):
        return 5, "the stem and layer1..layer4"

    def create(self, name, kwargs):
        import torchvision

        net = getattr(torchvision.models, name)(weights=None, **kwargs)
        return Created(net, replace_classifier(net, "fc"), ("fc.",))

    def layout(self, name, created):
        net = created.net
        return Layout(net, stages=[[net.conv1, net.bn1], *[[getattr(net, n)] for n in LAYERS]], units=_units,
                      pool=_pool, dim=created.dim, description="the stem and layer1..layer4")


def _stem(net, x):
    return net.maxpool(net.relu(net.bn1(net.conv1(x))))


def _units(net):
    stem = (0, lambda x: _stem(net, x))
    return [stem] + [(s, block) for s, n in enumerate(LAYERS, 1) for block in getattr(net, n)]


def _pool(net, x):
    return torch.flatten(net.avgpool(x), 1)
