"""Causal multi-stage TCN (MS-TCN, Farha & Gall 2019, made causal) with a carried state.

Each dilated layer sees its current input plus the last (k−1)·d inputs it saw before; those are its state.
A zero state is the zero left-padding of the whole-sequence causal convolution, so chunks with the state
carried equal the whole sequence exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KERNEL = 3


class CausalDilatedResidual(nn.Module):
    def __init__(self, channels: int, dilation: int, dropout: float):
        super().__init__()
        self.context = (KERNEL - 1) * dilation
        self.conv = nn.Conv1d(channels, channels, KERNEL, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, T], past [B, C, context] → output [B, C, T], new past."""
        full = torch.cat([past, x], dim=2)
        out = x + self.drop(self.mix(F.relu(self.conv(full))))
        return out, full[:, :, full.shape[2] - self.context:]


class Stage(nn.Module):
    def __init__(self, in_dim: int, channels: int, num_classes: int, layers: int, dropout: float):
        super().__init__()
        self.inp = nn.Conv1d(in_dim, channels, 1)
        self.layers = nn.ModuleList(CausalDilatedResidual(channels, 2 ** i, dropout) for i in range(layers))
        self.out = nn.Conv1d(channels, num_classes, 1)

    def forward(self, x, pasts):
        h, new = self.inp(x), []
        for layer, past in zip(self.layers, pasts):
            h, p = layer(h, past)
            new.append(p)
        return self.out(h), new


class CausalTCNHead(nn.Module):
    """State: one [B, channels, (k−1)·d] tensor per dilated layer of every stage. Outputs [B, T, stages, C]."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 64, layers: int = 6, dropout: float = 0.0,
                 stages: int = 2):
        super().__init__()
        self.stages = nn.ModuleList(
            Stage(in_dim if s == 0 else num_classes, hidden, num_classes, layers, dropout) for s in range(stages))

    def initial_state(self, batch_size: int, device=None, dtype=torch.float32):
        return tuple(torch.zeros(batch_size, layer.conv.in_channels, layer.context, device=device, dtype=dtype)
                     for stage in self.stages for layer in stage.layers)

    def forward(self, features, state, reset):
        from .heads import reset_state

        state = list(reset_state(state, reset, batch_dim=0))
        x, new, outputs = features.transpose(1, 2), [], []
        for i, stage in enumerate(self.stages):
            n = len(stage.layers)
            logits, pasts = stage(x if i == 0 else F.softmax(x, dim=1), state[:n])
            state, x = state[n:], logits
            new += pasts
            outputs.append(logits.transpose(1, 2))
        # every stage's output, [B, T, S, C]: the losses average over stages (MS-TCN), predictions take the last
        return torch.stack(outputs, dim=2), tuple(new)
