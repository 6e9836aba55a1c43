"""torchvision ConvNeXt (LayerNorm: nothing for the norm policy to convert)."""
from __future__ import annotations

from ..staged import Layout
from .base import Created, Family, replace_classifier

DESCRIPTION = "the stem and stages 1..4 (2..4 with the downsampling before them)"


class TorchvisionConvNeXt(Family):
    names = ("convnext_tiny", "convnext_small", "convnext_base", "convnext_large")

    def stages(self, name):
        return 5, DESCRIPTION

    def drop_path_argument(self, name):
        return "stochastic_depth_prob"

    def create(self, name, kwargs):
        import torchvision

        net = getattr(torchvision.models, name)(weights=None, **kwargs)
        # classifier = [LayerNorm2d, Flatten, Linear]: the norm and flatten pool, the Linear goes
        return Created(net, replace_classifier(net.classifier, "2"), ("classifier.2.",))

    def layout(self, name, created):
        net = created.net
        f = net.features  # [stem, stage 1, downsample, stage 2, downsample, stage 3, downsample, stage 4]
        stages = [[f[0]], [f[1]], [f[2], f[3]], [f[4], f[5]], [f[6], f[7], net.classifier]]
        return Layout(net, stages=stages, units=_units, pool=_pool, dim=created.dim, description=DESCRIPTION)


def _units(net):
    f = net.features
    out = [(0, f[0]), *[(1, block) for block in f[1]]]
    for s in (2, 3, 4):
        out += [(s, f[2 * s - 2]), *[(s, block) for block in f[2 * s - 1]]]
    return out


def _pool(net, x):
    return net.classifier(net.avgpool(x))
