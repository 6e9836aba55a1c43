"""Pairs of clips for the static/dynamic estimator (Kowal et al.; reference/analysis.md §1.2), from any
prepared split.

- Dynamic pair (factor 0, "same motion, different appearance"): the same frames under two different appearance
  transforms (style 1, and style 2 drawn uniformly from the others), each applied identically to every frame.
- Static pair (factor 1, "same appearance, different motion"): the clip in style 1, and the same styled clip
  with its frames shuffled in time by a random permutation (no repeated frames, no second video).

The reference renders videos with a few-shot video stylisation network (Texler et al., 4 styles), which is
not available offline. These deterministic appearance transforms stand in for it (`STYLES`):
  invert    — the photographic negative, 255 − x;
  channels  — the colour channels permuted, RGB → BRG;
  sepia     — luminance mapped onto a brown tone ramp (colour removed, a tint added);
  cartoon   — colours posterised to 4 levels per channel, edges (Sobel magnitude of the luminance) drawn dark:
              flat regions with outlines, the nearest to a stylisation;
  canvas    — the frame multiplied by a fixed woven texture (the same texture on every frame of every clip);
  none      — the frame as it is (not a default style: the reference never compares an unstylised clip).
Every transform is a function of one frame alone, so a clip is transformed consistently over time and the
motion is kept. The factors of the N pairs are drawn at random, as the reference's action loader draws each
one, but balanced (a random order of N/2 dynamic and N/2 static: `pair_factors`), not alternated 0, 1, 0, ... as
its VOS loader does: the clips come in the split's order, and on a split whose videos alternate their classes
alternation gives every dynamic pair one class and every static pair the other, which the estimator then reads
as neither factor. Pair i draws its styles and permutation from (seed, i) only: the same split, clip length,
seed and count always give the same pairs, however they are batched.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .estimator import DYNAMIC, STATIC

from .config import DEFAULT_STYLES  # noqa: F401 (the names the config lists)
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def _luma(x: torch.Tensor) -> torch.Tensor:
    return (x * _LUMA).sum(-1, keepdim=True)


def _invert(x):
    return 255 - x


def _channels(x):
    return x[..., [2, 0, 1]]


def _sepia(x):
    return _luma(x) * torch.tensor([1.07, 0.74, 0.43])


def _cartoon(x):
    levels = torch.floor(x / 64) * 64 + 32  # 4 levels per channel
    y = _luma(x).movedim(-1, -3).flatten(0, -4)  # [n, 1, H, W]
    sobel = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
    kernels = torch.stack([sobel, sobel.T])[:, None]
    g = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), kernels).norm(dim=1, keepdim=True)
    edges = (g / 255).clamp(0, 1).movedim(-3, -1).reshape(*x.shape[:-1], 1)
    return levels * (1 - edges)


def _canvas(x):
    H, W = x.shape[-3:-1]
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    weave = 0.5 * (torch.sin(2 * math.pi * xx / 4) * torch.sin(2 * math.pi * yy / 4))
    grain = torch.from_numpy(np.random.default_rng(12345).random((H, W), np.float32)) - 0.5
    texture = (0.8 + 0.25 * weave + 0.2 * grain)[..., None]
    return x * texture


STYLES = {"invert": _invert, "channels": _channels, "sepia": _sepia, "cartoon": _cartoon, "canvas": _canvas,
          "none": lambda x: x}


def apply_style(name: str, frames: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] → uint8, the same transform on every frame."""
    out = STYLES[name](frames.float())
    return out.round().clamp(0, 255).to(torch.uint8)


def check_styles(styles) -> tuple[str, ...]:
    styles = tuple(styles)
    unknown = [s for s in styles if s not in STYLES]
    if unknown or len(set(styles)) < 2:
        raise ValueError(f"styles {list(styles)}: need at least two different ones of {', '.join(STYLES)}")
    return styles


@dataclass(frozen=True)
class PairSpec:
    styles: tuple[str, ...] = DEFAULT_STYLES
    seed: int = 0


def pair_factors(pairs: int, seed: int) -> np.ndarray:
    """The factor of each of `pairs` pairs: ⌈N/2⌉ dynamic and ⌊N/2⌋ static in a random order drawn from the seed."""
    factors = np.where(np.arange(pairs) % 2 == 0, DYNAMIC, STATIC)
    return np.random.default_rng([seed, pairs, 1]).permutation(factors)  # a stream no pair's (seed, i) draws from


def make_pair(clip: torch.Tensor, index: int, factor: int, spec: PairSpec) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One clip [T, H, W, 3] uint8 → (clip 1, clip 2, factor) of pair number `index` of the given factor."""
    rng = np.random.default_rng([spec.seed, index])
    k = len(spec.styles)
    s1 = int(rng.integers(k))
    a = apply_style(spec.styles[s1], clip)
    if factor == DYNAMIC:
        s2 = (s1 + 1 + int(rng.integers(k - 1))) % k  # uniform over the other styles
        return a, apply_style(spec.styles[s2], clip), factor
    return a, a[torch.from_numpy(rng.permutation(clip.shape[0]))], factor


class PairSource:
    """Pairs built from whole clips of `clip_len` frames of a prepared split (evenly spaced views of every video,
    as many per video as `pairs` needs); iterate for batches (clips 1 [b, T, H, W, 3], clips 2, factors [b])."""

    def __init__(self, root, split: str, clip_len: int, pairs: int, batch_size: int = 8, spec: PairSpec = PairSpec(),
                 stride: int = 1, num_workers: int = 1):
        from ..data.loader import SequenceLoader

        if pairs < 4:
            raise ValueError(f"pairs={pairs}: the estimator needs at least 4 pairs (2 of each factor)")
        check_styles(spec.styles)
        self.spec, self.pairs, self.clip_len = spec, pairs, clip_len
        self.factors = pair_factors(pairs, spec.seed)
        probe = SequenceLoader(root, split, 0, 1, batch_size, clip_len, shuffle=False, sampling="views", stride=stride)
        if not probe.videos:
            raise ValueError(f"split {split!r} has no videos")
        full = [v for v in probe.videos if v.num_frames >= (clip_len - 1) * stride + 1]
        if not full:
            raise ValueError(f"no video of split {split!r} is long enough for a clip of {clip_len} frames")
        views = -(-pairs // len(full))
        self.loader = SequenceLoader(root, split, 0, 1, batch_size, clip_len, shuffle=False, sampling="views",
                                     views=views, stride=stride, num_workers=num_workers)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        index = 0
        self.loader.load_state_dict({"epoch": 0, "step": 0})  # every pass reads the same clips from the start
        for batch in self.loader:
            a, b, f = [], [], []
            for lane in range(batch.frames.shape[0]):
                if index >= self.pairs:
                    break
                if batch.video[lane] < 0 or not bool(batch.valid[lane].all()):  # padding, or a short video
                    continue
                x, y, factor = make_pair(batch.frames[lane], index, int(self.factors[index]), self.spec)
                a.append(x), b.append(y), f.append(factor)
                index += 1
            if a:
                yield torch.stack(a), torch.stack(b), torch.tensor(f)
            if index >= self.pairs:
                break
