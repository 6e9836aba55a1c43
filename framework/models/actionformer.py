"""An ActionFormer-style localization head (Zhang et al., ECCV 2022; reference/metrics.md §4) over the whole
sequence — not causal, no carried state, so it needs every snippet of the sequence at once (at trainer.sp > 1
through `trainer.handoff=gather`, framework/relay.py).

features [B, T, D] (backbone steps) → snippets (mean of `snippet_len` steps every `snippet_stride` steps,
over the valid steps only) → padded to a multiple of 2^(levels−1) → an embedding of `layers` masked convs
(kernel 3, LayerNorm, ReLU) → a stem block at stride 1 → levels−1 blocks downsampling by 2 (strided residual
conv blocks, ActionFormer's `backbone_type: conv`, or local self-attention blocks) → a pyramid of `levels`
levels, each scored by shared heads: classification (2 × [conv k3, LN, ReLU], conv to C logits, bias from the
prior 0.01) and regression (the same, conv to 2 distances × a learnable per-level scale, ReLU: distances to the
start and the end in units of the level's stride).

Outputs [B, P, C + 2]: per pyramid point (level 0's points, then level 1's, …) the C class logits and the two
distances; every layer is masked as ActionFormer's MaskedConv1D is (outputs zeroed where the input is padding,
a level's mask = level 0's at every 2^l-th point). framework/tasks/pyramid.py knows the same layout.
The local attention here is a simplified ActionFormer block: pre-LN multi-head attention over ±window//2
neighbours (a band mask), an MLP (4×, GELU), downsampling by a max-pool before the block.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PRIOR = 0.01


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of [B, C, T]."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class MaskedConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, bias: bool = True):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(cin, cout, kernel, stride, padding=kernel // 2, bias=bias)

    def forward(self, x, mask):
        """x [B, C, T], mask [B, 1, T] float → conv(x) zeroed outside the (downsampled) mask."""
        mask = mask[:, :, ::self.stride]
        return self.conv(x) * mask, mask


class ConvBlock(nn.Module):
    """ActionFormer's ConvBlock: conv (stride s, ×2 width), ReLU, conv, + shortcut (1×1 strided if s > 1), ReLU."""

    def __init__(self, dim: int, stride: int = 1):
        super().__init__()
        self.conv1, self.conv2 = MaskedConv(dim, 2 * dim, 3, stride), MaskedConv(2 * dim, dim, 3)
        self.shortcut = MaskedConv(dim, dim, 1, stride) if stride > 1 else None

    def forward(self, x, mask):
        out, m = self.conv1(x, mask)
        out, m = self.conv2(F.relu(out), m)
        skip = self.shortcut(x, mask)[0] if self.shortcut is not None else x
        return F.relu(out + skip), m


class LocalAttentionBlock(nn.Module):
    """Pre-LN local multi-head self-attention (each point sees ±window//2 valid neighbours) and an MLP."""

    def __init__(self, dim: int, heads: int, window: int, dropout: float, stride: int = 1):
        super().__init__()
        self.stride, self.half = stride, max(1, window // 2)
        self.norm1, self.norm2 = ChannelNorm(dim), ChannelNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(nn.Conv1d(dim, 4 * dim, 1), nn.GELU(), nn.Dropout(dropout), nn.Conv1d(4 * dim, dim, 1))

    def forward(self, x, mask):
        if self.stride > 1:  # ActionFormer's skip path downsamples by a max-pool (of the valid points only)
            x = F.max_pool1d(x.masked_fill(mask == 0, float("-inf")), 3, self.stride, padding=1)
            mask = mask[:, :, ::self.stride]
            x = x.masked_fill(mask == 0, 0.0)
        T = x.shape[2]
        i = torch.arange(T, device=x.device)
        band = (i[:, None] - i[None, :]).abs() <= self.half
        # a query may look at valid keys of its band, and always at itself (rows of padding are zeroed anyway)
        allowed = (band[None] & (mask > 0)) | torch.eye(T, dtype=torch.bool, device=x.device)[None]
        attn_mask = (~allowed).repeat_interleave(self.attn.num_heads, 0)
        h = self.norm1(x).transpose(1, 2)
        a, _ = self.attn(h, h, h, attn_mask=attn_mask, need_weights=False)
        x = (x + a.transpose(1, 2)) * mask
        x = (x + self.mlp(self.norm2(x))) * mask
        return x, mask


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))  # not 0-d: DeepSpeed broadcasts parameters as bytes

    def forward(self, x):
        return x * self.scale


class PointHead(nn.Module):
    """Shared across levels: 2 × [masked conv k3, LN, ReLU], then a masked conv to `out` channels."""

    def __init__(self, dim: int, out: int, layers: int = 2):
        super().__init__()
        self.convs = nn.ModuleList(MaskedConv(dim, dim, 3, bias=False) for _ in range(layers))
        self.norms = nn.ModuleList(ChannelNorm(dim) for _ in range(layers))
        self.out = MaskedConv(dim, out, 3)

    def forward(self, x, mask):
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x, mask)[0]))
        return self.out(x, mask)[0]


class ActionFormerHead(nn.Module):
    causal = False  # sees the whole sequence (the relay refuses it at sp > 1; gather runs it)
    masked = True  # takes `valid` [B, T] (the steps that are not padding)

    def __init__(self, in_dim: int, num_outputs: int, hidden: int = 128, layers: int = 2, dropout: float = 0.0,
                 levels: int = 6, blocks: str = "conv", heads: int = 4, window: int = 19,
                 snippet: tuple[int, int] = (1, 1)):
        super().__init__()
        if num_outputs < 3:
            raise ValueError(f"the localization head needs C + 2 outputs (C >= 1 classes), got {num_outputs}")
        self.classes, self.levels = num_outputs - 2, levels
        self.snippet_len, self.snippet_stride = snippet
        dims = [in_dim] + [hidden] * layers
        self.embed = nn.ModuleList(MaskedConv(a, b, 3, bias=False) for a, b in zip(dims[:-1], dims[1:]))
        self.embed_norms = nn.ModuleList(ChannelNorm(hidden) for _ in range(layers))

        def block(stride):
            return ConvBlock(hidden, stride) if blocks == "conv" else \
                LocalAttentionBlock(hidden, heads, window, dropout, stride)

        self.stem = block(1)
        self.branch = nn.ModuleList(block(2) for _ in range(levels - 1))
        self.cls_head, self.reg_head = PointHead(hidden, self.classes), PointHead(hidden, 2)
        self.scales = nn.ModuleList(Scale() for _ in range(levels))
        nn.init.constant_(self.cls_head.out.conv.bias, -math.log((1 - PRIOR) / PRIOR))

    def initial_state(self, batch_size: int, device=None, dtype=torch.float32):
        return None

    def snippets(self, features: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, D] steps → [B, L, D] snippet features (means over valid steps), L = ⌈T / stride⌉, and their
        validity (a snippet counts when its first step is real)."""
        n, s = self.snippet_len, self.snippet_stride
        if n == 1 and s == 1:
            return features, valid
        B, T, D = features.shape
        L = -(-T // s)
        pad = (L - 1) * s + n - T
        x = F.pad(features, (0, 0, 0, pad)).unfold(1, n, s)  # [B, L, D, n]
        m = F.pad(valid, (0, pad)).unfold(1, n, s).to(x.dtype)  # [B, L, n]
        pooled = (x * m[:, :, None]).sum(-1) / m.sum(-1, keepdim=True).clamp(min=1)
        return pooled, valid[:, ::s]

    def forward(self, features, state, reset, valid=None):
        if valid is None:
            valid = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        x, v = self.snippets(features, valid)
        unit = 2 ** (self.levels - 1)
        pad = -x.shape[1] % unit
        x = F.pad(x, (0, 0, 0, pad)).transpose(1, 2)  # [B, D, Lp]
        mask = F.pad(v, (0, pad))[:, None].to(x.dtype)
        for conv, norm in zip(self.embed, self.embed_norms):
            x = F.relu(norm(conv(x, mask)[0]))
        x, m = self.stem(x, mask)
        pyramid = [(x, m)]
        for b in self.branch:
            x, m = b(x, m)
            pyramid.append((x, m))
        out = []
        for level, (x, m) in enumerate(pyramid):
            logits = self.cls_head(x, m)
            offsets = F.relu(self.scales[level](self.reg_head(x, m)))
            out.append(torch.cat([logits, offsets], 1).transpose(1, 2))  # [B, Lp / 2^l, C + 2]
        return torch.cat(out, 1), None
