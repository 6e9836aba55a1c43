"""torchvision video backbones: r3d_18, mc3_18, r2plus1d_18, s3d (BatchNorm3d: the norm policy converts
them), mvit_v2_s and swin3d_t (LayerNorm).

A video backbone takes a clip [N, T, H, W, 3] and gives features per time step [N, T / s, D], s its temporal
stride (input frames per output step; the features are the last map averaged over space only):

| backbone    | s | why                                                     | D    |
|-------------|---|---------------------------------------------------------|------|
| r3d_18      | 8 | 3×3×3 convs with stride 2 in time in layer2..layer4     | 512  |
| mc3_18      | 1 | 3D convs in layer1 only, 2D (1×3×3) after               | 512  |
| r2plus1d_18 | 8 | (2+1)D convs with stride 2 in time in layer2..layer4    | 512  |
| s3d         | 8 | stride 2 in the first conv, two 2×2×2 max-pools         | 1024 |
| mvit_v2_s   | 2 | 3×7×7 patches with stride 2 in time                     | 768  |
| swin3d_t    | 2 | 2×4×4 patches                                           | 768  |

A clip should be a multiple of s frames long (the config checks model.clip_len). Inside a clip every output
step sees every frame of the clip (the convolutions and attention are not causal).

Chunk boundaries of a streamed video: the backbone has no state. The frames of one call are cut into clips
of model.clip_len (default: the whole sequence a rank holds in one batch), and each clip is seen alone: a
step's features depend on the frames of its own clip only, never on the clip before (and never on a later
one). Temporal context across clips is the stateful head's job. Convolution padding at a clip's ends
is zeros, as for any clip a video model is trained on.

MViT's pooled clip feature here is the mean of its per-step features (its patch tokens), not its class
token; swin3d_t pools the same way its own head does.
"""
from __future__ import annotations

from torch import nn

from ..staged import Layout
from .base import Created, Family, blocks_of, replace_classifier

KINETICS_MEAN, KINETICS_STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)
STRIDES = {"r3d_18": 8, "mc3_18": 1, "r2plus1d_18": 8, "s3d": 8, "mvit_v2_s": 2, "swin3d_t": 2}
_RESNET = (5, "the stem and layer1..layer4")
STAGES = {"r3d_18": _RESNET, "mc3_18": _RESNET, "r2plus1d_18": _RESNET,
          "s3d": (4, "the stem (features 0..4) and the Mixed 3, 4 and 5 blocks (each with the pooling before it)"),
          "mvit_v2_s": (5, "the patch embedding and the 4 scale stages (blocks 0, 1..2, 3..13, 14..15)"),
          "swin3d_t": (5, "the patch embedding and stages 1..4 (2..4 with the patch merging before them)")}


class Video3D(Family):
    names = tuple(STRIDES)
    video = True

    def stages(self, name):
        return STAGES[name]

    def temporal_stride(self, name):
        return STRIDES[name]

    def drop_path_argument(self, name):
        return "stochastic_depth_prob" if name in ("mvit_v2_s", "swin3d_t") else None

    def create(self, name, kwargs):
        from torchvision.models import video

        rate = kwargs.pop("stochastic_depth_prob", None) if name == "swin3d_t" else None
        net = getattr(video, name)(weights=None, **kwargs)
        if rate is not None:  # torchvision's swin3d_t fixes its rate (0.1) instead of taking it as an argument
            _set_stochastic_depth(net, rate)
        if name == "s3d":  # classifier = [Dropout, 1×1×1 conv]
            return Created(net, replace_classifier(net.classifier, "1"), ("classifier.",))
        if name == "mvit_v2_s":  # head = [Dropout, Linear]
            return Created(net, replace_classifier(net.head, "1"), ("head.",))
        if name == "swin3d_t":
            return Created(net, replace_classifier(net, "head"), ("head.",))
        return Created(net, replace_classifier(net, "fc"), ("fc.",))

    def layout(self, name, created):
        stages, units, pool = {"s3d": S3D, "mvit_v2_s": MVIT, "swin3d_t": SWIN}.get(name, VIDEO_RESNET)
        return Layout(created.net, stages=stages(created.net), units=units, pool=pool, dim=created.dim,
                      description=STAGES[name][1], mean=KINETICS_MEAN, std=KINETICS_STD, video=True,
                      temporal_stride=STRIDES[name])


def _set_stochastic_depth(net: nn.Module, rate: float) -> None:
    """Set the drop-path rate as torchvision schedules it: rising linearly from 0 at the first block to `rate`
    at the last."""
    from torchvision.ops import StochasticDepth

    layers = [m for m in net.modules() if isinstance(m, StochasticDepth)]
    for i, m in enumerate(layers):
        m.p = rate * i / max(1, len(layers) - 1)


def _space_mean(net, x):
    """[N, C, T, H, W] → [N, T, C]."""
    return x.mean((3, 4)).transpose(1, 2)


def _channels_last_space_mean(net, x):
    """[N, T, H, W, C] → the final norm → [N, T, C]."""
    return net.norm(x).mean((2, 3))


# -- r3d_18, mc3_18, r2plus1d_18 ---------------------------------------------------------------------------
_LAYERS = ("layer1", "layer2", "layer3", "layer4")


def _resnet_stages(net):
    return [[net.stem], *[[getattr(net, n)] for n in _LAYERS]]


def _resnet_units(net):
    return [(0, net.stem)] + [(s, block) for s, n in enumerate(_LAYERS, 1) for block in getattr(net, n)]


VIDEO_RESNET = (_resnet_stages, _resnet_units, _space_mean)

# -- s3d ----------------------------------------------------------------------------------------------------
_S3D_BOUNDS = ((0, 5), (5, 7), (7, 13), (13, 16))  # stem; Mixed 3; pool + Mixed 4; pool + Mixed 5


def _s3d_stages(net):
    return [list(net.features[a:b]) for a, b in _S3D_BOUNDS]


def _s3d_units(net):
    return [(s, m) for s, owned in enumerate(_s3d_stages(net)) for m in owned]


S3D = (_s3d_stages, _s3d_units, _space_mean)

# -- swin3d_t -----------------------------------------------------------------------------------------------


def _swin_stages(net):
    f = net.features  # [stage 1, merging, stage 2, merging, stage 3, merging, stage 4]
    return [[net.patch_embed, net.pos_drop], [f[0]], [f[1], f[2]], [f[3], f[4]], [f[5], f[6], net.norm]]


def _swin_units(net):
    f = net.features
    out = [(0, lambda x: net.pos_drop(net.patch_embed(x)))]
    return out + [(s, m) for s, (a, b) in enumerate(((0, 1), (1, 3), (3, 5), (5, 7)), 1)
                  for part in f[a:b] for m in blocks_of(part)]


SWIN = (_swin_stages, _swin_units, _channels_last_space_mean)

# -- mvit_v2_s ----------------------------------------------------------------------------------------------


def _mvit_bounds(net) -> list[int]:
    """Block indices where a scale stage begins: where the queries are pooled in space."""
    starts = [i for i, b in enumerate(net.blocks) if i > 0 and _pools_space(b)]
    return [0, *starts, len(net.blocks)]


def _pools_space(block: nn.Module) -> bool:
    pool = getattr(block.attn, "pool_q", None)
    stride = getattr(getattr(pool, "pool", None), "stride", (1, 1, 1))
    return max(stride[1:]) > 1


def _mvit_stages(net):
    bounds = _mvit_bounds(net)
    stages = [[net.conv_proj, net.pos_encoding]] + [list(net.blocks[a:b]) for a, b in zip(bounds, bounds[1:])]
    stages[-1].append(net.norm)
    return stages


def _mvit_units(net):
    # the (T, H, W) token grid entering each block, filled as the forward goes: torchvision's blocks take it
    # as an argument. Fresh per call; a recomputation finds its entries already there.
    thw: list[tuple[int, int, int]] = []

    def stem(x):
        x = net.conv_proj(x)
        thw[:] = [tuple(x.shape[2:])]
        return net.pos_encoding(x.flatten(2).transpose(1, 2))

    def block(i):
        def run(x):
            x, out = net.blocks[i](x, thw[i])
            if len(thw) == i + 1:
                thw.append(out)
            return x
        return run

    def to_grid(x):  # patch tokens [N, 1 + T·H·W, C] → [N, T, H, W, C]; the class token is not a time step
        return x[:, 1:].reshape(x.shape[0], *thw[-1], x.shape[-1])

    bounds = _mvit_bounds(net)
    stage_of = [s for s in range(1, len(bounds)) for _ in range(bounds[s - 1], bounds[s])]
    return [(0, stem), *[(stage_of[i], block(i)) for i in range(len(net.blocks))], (len(bounds) - 1, to_grid)]


MVIT = (_mvit_stages, _mvit_units, _channels_last_space_mean)
