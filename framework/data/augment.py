"""Clip-consistent augmentation, batched on the device that trains.

Random resized crop, horizontal flip and colour jitter (brightness, contrast, saturation), with ONE set of
parameters per lane: every frame of a sequence gets the same transform (a crop that jumps between frames
would be fake motion), lanes are independent. The parameters come from the per-lane seeds the loader
puts in `SequenceBatch.aug_seed`, which change only where a lane's state is reset, so a streamed video
keeps its transform across chunks, the ranks of one sequence-parallel group (same batch, sliced in time)
agree, and a resumed run augments exactly like an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MODES = ("none", "clip")
_GREY = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class AugmentSpec:
    scale: tuple[float, float] = (0.35, 1.0)  # crop area as a fraction of the frame
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio (width / height)
    flip: float = 0.5  # probability of a horizontal flip
    jitter: float = 0.4  # brightness, contrast and saturation factors drawn in [1 - jitter, 1 + jitter]

    def __post_init__(self):
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"augment scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"augment ratio must satisfy 0 < lo <= hi, got {self.ratio}")
        if not 0 <= self.flip <= 1 or not 0 <= self.jitter < 1:
            raise ValueError("augment flip must be in [0, 1] and jitter in [0, 1)")


def draw_params(seeds: torch.Tensor, spec: AugmentSpec, aspect: float) -> torch.Tensor:
    """[B, 8] per lane: crop width, height (fractions of the frame), centre x, y (in [-1, 1]), flip sign,
    brightness, contrast, saturation. Drawn on the CPU from each lane's own generator: a lane's parameters
    depend on its seed only, not on the batch it sits in. aspect = frame height / width."""
    rows = []
    for seed in seeds.tolist():
        g = torch.Generator().manual_seed(int(seed))
        u = torch.rand(8, generator=g, dtype=torch.float64)
        area = spec.scale[0] + (spec.scale[1] - spec.scale[0]) * u[0]
        lo, hi = torch.log(torch.tensor(spec.ratio, dtype=torch.float64))
        ratio = torch.exp(lo + (hi - lo) * u[1])
        w = torch.sqrt(area * ratio * aspect).clamp(max=1.0)
        h = torch.sqrt(area / (ratio * aspect)).clamp(max=1.0)
        cx, cy = (1 - w) * (2 * u[2] - 1), (1 - h) * (2 * u[3] - 1)
        flip = -1.0 if u[4] < spec.flip else 1.0
        jitter = 1 + spec.jitter * (2 * u[5:8] - 1)
        rows.append(torch.cat([torch.stack([w, h, cx, cy, torch.tensor(flip, dtype=torch.float64)]), jitter]))
    return torch.stack(rows).float()


def augment_clips(frames: torch.Tensor, seeds: torch.Tensor, spec: AugmentSpec = AugmentSpec()) -> torch.Tensor:
    """uint8 or float [B, T, H, W, 3] → float32 [B, T, H, W, 3] in [0, 255], on the frames' device."""
    B, T, H, W, C = frames.shape
    p = draw_params(seeds, spec, H / W).to(frames.device)
    # the T frames of a lane as T·C channels of one image: one sampling grid per lane, not per frame (a
    # grid per frame would cost 8 bytes a pixel, twice the float frames themselves, for thousands of frames)
    x = frames.permute(0, 1, 4, 2, 3).reshape(B, T * C, H, W).float()
    # crop + flip as one affine resampling: output pixel (u, v) in [-1, 1]² reads input (w·flip·u + cx, h·v + cy)
    theta = torch.zeros(B, 2, 3, device=frames.device)
    theta[:, 0, 0], theta[:, 0, 2] = p[:, 0] * p[:, 4], p[:, 2]
    theta[:, 1, 1], theta[:, 1, 2] = p[:, 1], p[:, 3]
    grid = F.affine_grid(theta, [B, T * C, H, W], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = colour_jitter(x.reshape(B, T, C, H, W), p[:, 5:8])
    return x.permute(0, 1, 3, 4, 2)


def colour_jitter(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """x float [B, T, 3, H, W] in [0, 255]; factors [B, 3] brightness, contrast, saturation.
    Contrast pivots on mid-grey rather than each frame's mean (torchvision's choice), so the colour change
    is one fixed map per lane: frames of a sequence, and chunks of a streamed video, change alike."""
    f = factors[:, :, None, None, None, None]
    x = (x * f[:, 0]).clamp(0, 255)
    x = ((x - 127.5) * f[:, 1] + 127.5).clamp(0, 255)
    grey = (x * _GREY.to(x.device)[:, None, None]).sum(2, keepdim=True)
    return ((x - grey) * f[:, 2] + grey).clamp(0, 255)


class ClipAugment:
    """The trainer's hook: `frames = augment(batch.frames, batch.aug_seed)`."""

    def __init__(self, mode: str = "none", spec: AugmentSpec = AugmentSpec()):
        if mode not in MODES:
            raise ValueError(f"augment={mode!r}: choose one of {MODES}")
        self.mode, self.spec = mode, spec

    def __call__(self, frames: torch.Tensor, seeds) -> torch.Tensor:
        if self.mode == "none":
            return frames  # untouched uint8: the model converts and normalises
        if seeds is None:
            raise ValueError("augmentation needs SequenceBatch.aug_seed (set by SequenceLoader)")
        return augment_clips(frames, seeds, self.spec)


def build_augment(data_cfg) -> ClipAugment:
    """From DataConfig: augment (none | clip), augment_scale, augment_flip, augment_jitter."""
    spec = AugmentSpec(scale=(data_cfg.augment_scale, 1.0), flip=data_cfg.augment_flip, jitter=data_cfg.augment_jitter)
    return ClipAugment(data_cfg.augment, spec)
