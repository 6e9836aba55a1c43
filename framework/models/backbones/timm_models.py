"""timm models by name: `model.backbone=timm:<name>` for any timm model that yields one feature vector per
image (nfnet_l0, resnet50_gn, convnext_tiny, vit_small_patch16_224, ..., with an optional pretrained tag:
`timm:resnet50_gn.a1h_in1k`).

Built randomly initialised (`pretrained=False`, no download); `model.pretrained=timm` (or
`timm:<name.tag>`) takes timm's hub weights for users with internet. `model.backbone_kwargs` go to
`timm.create_model` (e.g. `img_size` for a ViT on small frames), `model.drop_path` as `drop_path_rate`.
The norm policy applies as to every family: a BatchNorm model (timm's resnet50, efficientnet, ... with
nn.BatchNorm2d or BatchNormAct2d) is converted; GroupNorm, LayerNorm and norm-free models are left alone.

Stages: timm's `forward_features` is re-run as stem → stages → tail for the layouts below, and the
split is checked against the model's own forward_features + forward_head(pre_logits=True) when the backbone is
built (one forward in eval mode). A model whose split does not reproduce it falls back to one unit per stage,
and then to the whole model as one stage (freeze_stages 0 or 1; checkpointing of the whole), with a statement.
A ViT's stages are its blocks (after the patch embedding): freeze_stages counts blocks.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ..staged import Layout
from .base import Created, Family

PREFIX = "timm:"
# (stem, stages, tail): the attribute names timm's forward_features runs, in order; stages either a list of
# attributes or one container whose children are the stages; tail attributes are used where the model has them
LAYOUTS = (
    (("conv1", "bn1", "act1", "maxpool"), ("layer1", "layer2", "layer3", "layer4"), ()),  # ResNet, ResNeXt, GN-ResNet
    (("stem",), "stages", ("norm_pre", "final_conv", "final_act", "norm")),  # ConvNeXt, NFNet, RegNet, MaxViT
    (("conv_stem", "bn1"), "blocks", ("conv_head", "bn2")),  # EfficientNet
    (("patch_embed", "_pos_embed", "patch_drop", "norm_pre"), "blocks", ("norm",)),  # ViT, DeiT
)


class Timm(Family):
    def serves(self, name):
        return name.startswith(PREFIX)

    def known(self, name):
        import timm

        return timm.is_model(name[len(PREFIX):])

    def candidates(self):
        import timm

        return [PREFIX + n for n in timm.list_models()]

    def drop_path_argument(self, name):
        return "drop_path_rate"

    def create(self, name, kwargs):
        net = _create(name[len(PREFIX):], kwargs, pretrained=False)
        classifier = net.pretrained_cfg.get("classifier") or "head"
        prefixes = tuple(f"{c}." for c in ([classifier] if isinstance(classifier, str) else classifier))
        return Created(net, getattr(net, "head_hidden_size", None) or net.num_features, prefixes)

    def hub_weights(self, name, source, kwargs):
        if source != "timm" and not source.startswith(PREFIX):
            return None
        model = name[len(PREFIX):] if source == "timm" else source[len(PREFIX):]
        return _create(model, kwargs, pretrained=True).state_dict()

    def layout(self, name, created):
        net = created.net
        cfg = net.pretrained_cfg
        common = dict(mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))), std=tuple(cfg.get("std", (0.229, 0.224, 0.225))))
        splits = _splits(net)
        if next(net.parameters()).is_meta:  # built for its shapes only (torch.device("meta")): nothing to run
            (stages, units, pool, description), _ = splits[0]
            return Layout(net, stages=stages, units=units, pool=pool, dim=created.dim, description=description,
                          **common)
        x, want = _reference(net, name)
        for (stages, units, pool, description), coarse in splits:
            layout = Layout(net, stages=stages, units=units, pool=pool, dim=want.shape[-1], description=description,
                            **common)
            if _reproduces(layout, x, want):
                if coarse:
                    layout.notes.append(f"{name}: its layers are not the usual {type(net).__name__} layout, so "
                                        f"it is split more coarsely: {len(stages)} stage(s), {description}")
                return layout
        raise AssertionError("the one-stage split always reproduces the model")


def _create(model: str, kwargs: dict, pretrained: bool) -> nn.Module:
    import timm

    from ...config import ConfigError

    try:
        return timm.create_model(model, pretrained=pretrained, num_classes=0, **kwargs)
    except TypeError as e:  # an argument this model does not take (backbone_kwargs, drop_path)
        raise ConfigError(f"model.backbone=timm:{model}: {e}") from None


def _probe_sizes(net: nn.Module) -> list[tuple[int, int]]:
    """Small inputs the model may accept: its patch embedding's fixed size (ViT), else 64², then the size it
    was configured for (models with fixed-size attention windows)."""
    embed = getattr(net, "patch_embed", None)
    fixed = getattr(embed, "img_size", None) if not getattr(net, "dynamic_img_size", False) else None
    configured = tuple(net.pretrained_cfg.get("input_size", (3, 224, 224))[1:])
    return [tuple(fixed) if fixed else (64, 64), configured]


def _reference(net: nn.Module, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """An input the model accepts and its own features for it (forward_features + forward_head(pre_logits))."""
    from ...config import ConfigError

    for h, w in _probe_sizes(net):
        x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))
        try:
            with _evaluating(net):
                out = net.forward_head(net.forward_features(x), pre_logits=True)
            break
        except (RuntimeError, AssertionError):  # not this size
            continue
    else:
        raise ConfigError(f"model.backbone={name}: does not run on {h}×{w} images to check its split")
    if out.ndim != 2:
        raise ConfigError(f"model.backbone={name}: gives features of shape {list(out.shape[1:])} per image, "
                          "not one vector: not a per-image backbone")
    return x, out


def _reproduces(layout: Layout, x: torch.Tensor, want: torch.Tensor) -> bool:
    try:
        with _evaluating(layout.net):
            for _, f in layout.units(layout.net):
                x = f(x)
            got = layout.pool(layout.net, x)
    except Exception:  # noqa: BLE001 - a wrong split may feed a layer the wrong shape: it does not reproduce
        return False
    return got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-5)


class _evaluating:
    """Eval mode and no_grad for the duration (the probe must not update BatchNorm statistics)."""

    def __init__(self, net):
        self.net, self.modes = net, [m.training for m in net.modules()]

    def __enter__(self):
        self.grad = torch.is_grad_enabled()
        torch.set_grad_enabled(False)
        self.net.eval()

    def __exit__(self, *exc):
        for m, mode in zip(self.net.modules(), self.modes):
            m.training = mode
        torch.set_grad_enabled(self.grad)


def _splits(net: nn.Module) -> list[tuple]:
    """Candidate (split, coarse) pairs, finest first: blocks as units, then stages as units (each with and
    without the layout's tail), then the whole model."""
    found = next((lay for lay in LAYOUTS if _has(net, lay)), None)
    if found is None:
        return [(_whole(net), True)]
    stem, stages, tail = found
    # a tail attribute may belong to forward_head instead (MobileNetV3's conv_head): also try without the tail
    return [(_split(net, stem, stages, t, blocks), not blocks) for blocks in (True, False) for t in (tail, ())] + \
        [(_whole(net), True)]


def _has(net, layout) -> bool:
    stem, stages, _ = layout
    names = list(stem) + ([stages] if isinstance(stages, str) else list(stages))
    return all(hasattr(net, n) for n in names) and isinstance(getattr(net, names[-1]), nn.Module)


def _split(net, stem, stages, tail, blocks: bool):
    stage_modules = _stage_modules(net, stages)
    tail = tuple(t for t in tail if isinstance(getattr(net, t, None), nn.Module))
    stem_modules = [m for m in (getattr(net, s) for s in stem) if isinstance(m, nn.Module)]
    if "_pos_embed" in stem and isinstance(getattr(net, "pos_drop", None), nn.Module):
        stem_modules.append(net.pos_drop)  # ViT's _pos_embed applies it: frozen (eval) with the stem
    container = [getattr(net, stages)] if isinstance(stages, str) else []
    placed = {id(m) for m in stem_modules + stage_modules + [getattr(net, t) for t in tail] + container}
    rest = [m for m in net.children() if id(m) not in placed]  # pooling, head norm, ...: the last stage's
    owned = [stem_modules + list(net.parameters(recurse=False))] + [[m] for m in stage_modules]
    owned[-1] += [getattr(net, t) for t in tail] + rest
    n = len(stage_modules)
    names = f"{stages}.0..{stages}.{n - 1}" if isinstance(stages, str) else f"{stages[0]}..{stages[-1]}"
    return (owned, partial(_split_units, stem=stem, stages=stages, blocks=blocks), partial(_split_pool, tail=tail),
            f"the stem and {n} stages ({names})")


def _stage_modules(net, stages) -> list[nn.Module]:
    return list(getattr(net, stages)) if isinstance(stages, str) else [getattr(net, s) for s in stages]


def _split_units(net, stem, stages, blocks: bool):
    def run_stem(x):
        for s in stem:
            x = getattr(net, s)(x)
        return x

    return [(0, run_stem)] + [(s, u) for s, stage in enumerate(_stage_modules(net, stages), 1)
                              for u in (_blocks(stage) if blocks else [stage])]


def _split_pool(net, x, tail):
    for t in tail:
        x = getattr(net, t)(x)
    return net.forward_head(x, pre_logits=True)


def _blocks(stage: nn.Module) -> list[nn.Module]:
    """A stage's units: a Sequential's children; timm's stage modules of [downsample] + blocks."""
    if isinstance(stage, nn.Sequential):
        return list(stage)
    names = [n for n, _ in stage.named_children()]
    if set(names) <= {"downsample", "blocks"} and isinstance(getattr(stage, "blocks", None), nn.Sequential):
        return ([stage.downsample] if "downsample" in names else []) + list(stage.blocks)
    return [stage]


def _whole(net):
    return ([list(net.children()) + list(net.parameters(recurse=False))], _whole_units, _head,
            "the whole model as one stage")


def _whole_units(net):
    return [(0, net.forward_features)]


def _head(net, x):
    return net.forward_head(x, pre_logits=True)
