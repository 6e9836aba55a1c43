"""Causal transformer over a sliding memory window of W frames, with a carried state.

Frame t attends to frames t−W+1 … t. Positions enter as ALiBi distance biases, which depend only on how far
back a key is, so the result does not depend on where chunk boundaries fall. State per layer: that layer's
inputs for the last W frames, plus how many of them are real (after a reset, none are).
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn


def alibi_slopes(heads: int) -> torch.Tensor:
    return torch.tensor([2 ** (-8 * (i + 1) / heads) for i in range(heads)])


class WindowLayer(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, dropout: float):
        super().__init__()
        self.heads, self.window = heads, window
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)
        self.register_buffer("slopes", alibi_slopes(heads), persistent=False)

    def forward(self, x, past, count):
        """x [B, T, D]; past [B, W, D] (the previous W inputs); count [B] real frames in past."""
        B, T, D = x.shape
        W = self.window
        full = torch.cat([past, x], dim=1)  # [B, W+T, D]
        q, k, v = self.qkv(self.norm1(full)).chunk(3, dim=-1)
        q = q[:, W:]
        split = lambda t: t.view(B, t.shape[1], self.heads, D // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        qpos = torch.arange(T, device=x.device)[:, None] + W  # position of each query in `full`
        kpos = torch.arange(W + T, device=x.device)[None, :]
        dist = qpos - kpos  # how far back each key is
        in_window = (dist >= 0) & (dist < W)
        real = kpos[None] >= (W - count.long())[:, None, None]  # [B, 1, W+T]: drop keys from before a reset
        mask = in_window[None] & real
        bias = -self.slopes.view(1, -1, 1, 1) * dist.clamp(min=0)[None, None].to(x.dtype)
        bias = bias.masked_fill(~mask[:, None], float("-inf"))
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        h = x + self.drop(self.proj(att.transpose(1, 2).reshape(B, T, D)))
        h = h + self.drop(self.mlp(self.norm2(h)))
        return h, full[:, -W:]


class CausalTransformerHead(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, hidden: int = 128, layers: int = 2, dropout: float = 0.0,
                 heads: int = 4, window: int = 64):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"transformer hidden={hidden} must be a multiple of heads={heads}")
        self.window, self.hidden = window, hidden
        self.inp = nn.Linear(in_dim, hidden)
        self.layers = nn.ModuleList(WindowLayer(hidden, heads, window, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.classifier = nn.Linear(hidden, num_classes)

    def initial_state(self, batch_size: int, device=None, dtype=torch.float32):
        pasts = tuple(torch.zeros(batch_size, self.window, self.hidden, device=device, dtype=dtype)
                      for _ in self.layers)
        return pasts + (torch.zeros(batch_size, device=device, dtype=dtype),)

    def forward(self, features, state, reset):
        from .heads import reset_state

        *pasts, count = reset_state(state, reset, batch_dim=0)
        x, new = self.inp(features), []
        for layer, past in zip(self.layers, pasts):
            x, p = layer(x, past, count)
            new.append(p)
        count = (count + features.shape[1]).clamp(max=self.window)
        return self.classifier(self.norm(x)), (*new, count)
