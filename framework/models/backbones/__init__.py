"""The backbone registry: one family per file (base.py says what a family is). A new family is a new file with
a Family subclass and one entry in FAMILIES.

- torchvision_resnet: resnet18/34/50/101/152
- torchvision_convnext: convnext_tiny/small/base/large
- video3d: r3d_18, mc3_18, r2plus1d_18, s3d, mvit_v2_s, swin3d_t
- timm_models: timm:<any timm model giving per-image features>
- fusion3d: the Variational DropPath template (S / ST / S+ST units) and its fixed sub-networks
"""
from __future__ import annotations

import difflib

from .base import Family
from .fusion3d import Fusion3D
from .timm_models import Timm
from .torchvision_convnext import TorchvisionConvNeXt
from .torchvision_resnet import TorchvisionResNet
from .video3d import Video3D

FAMILIES: tuple[Family, ...] = (TorchvisionResNet(), TorchvisionConvNeXt(), Video3D(), Fusion3D(), Timm())


def find(name: str) -> Family:
    """The family that builds `name`, or a one-line ConfigError listing close matches."""
    from ...config import ConfigError

    fam = next((f for f in FAMILIES if f.serves(name)), None)
    if fam is not None and fam.known(name):
        return fam
    pool = fam.candidates() if fam is not None else [n for f in FAMILIES for n in f.candidates()]
    close = difflib.get_close_matches(name, pool, n=5, cutoff=0.6)
    plain = [n for f in FAMILIES for n in f.names]
    hint = f"close matches: {', '.join(close)}" if close else \
        f"choose one of {', '.join(plain)}, or timm:<name> for a timm model"
    raise ConfigError(f"model.backbone={name!r} is unknown; {hint}")


def check_config(m) -> None:
    """What a ModelConfig's backbone fields can be checked for without building anything."""
    from ...config import ConfigError

    fam = find(m.backbone)
    fam.check_kwargs(m.backbone, dict(m.backbone_kwargs))
    stages = fam.stages(m.backbone)
    if m.freeze_stages < 0 or (stages and m.freeze_stages > stages[0]):
        top = f"{stages[0]} (the whole backbone), counting {stages[1]}" if stages else "the number of stages"
        raise ConfigError(f"model.freeze_stages={m.freeze_stages}: 0 (none) to {top}")
    if m.drop_path is not None:
        if not 0 <= m.drop_path < 1:
            raise ConfigError(f"model.drop_path must be in [0, 1), got {m.drop_path}")
        if m.drop_path > 0 and fam.drop_path_argument(m.backbone) is None:
            raise ConfigError(f"model.drop_path={m.drop_path}: {m.backbone} has no drop-path (stochastic depth)")
    if m.clip_len is not None and not fam.video:
        raise ConfigError(f"model.clip_len={m.clip_len}: {m.backbone} sees each frame on its own; clip_len is for "
                          "video backbones")
    if m.clip_len is not None and m.clip_len < 1:
        raise ConfigError(f"model.clip_len must be >= 1, got {m.clip_len}")


def check_clips(m, seq_len: int) -> None:
    """A video backbone's clips must tile the sequence, a micro-chunk must hold whole clips, and a clip must
    be a whole number of the backbone's temporal steps."""
    from ...config import ConfigError

    fam = find(m.backbone)
    if not fam.video:
        return
    clip, stride = m.clip_len or seq_len, fam.temporal_stride(m.backbone)
    name = "model.clip_len" if m.clip_len else "data.seq_len (one clip per sequence: model.clip_len=null)"
    for ok, msg in ((seq_len % clip == 0, f"data.seq_len={seq_len} is not a multiple of model.clip_len={clip}"),
                    (clip % stride == 0, f"{name}={clip} is not a multiple of {m.backbone}'s temporal stride {stride}"),
                    (m.frame_chunk is None or m.frame_chunk % clip == 0,
                     f"model.frame_chunk={m.frame_chunk} must be a multiple of the clip length {clip} "
                     f"({m.backbone} sees whole clips)")):
        if not ok:
            raise ConfigError(msg)
