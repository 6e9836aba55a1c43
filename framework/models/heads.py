"""Temporal heads with a carried state.

Contract shared by every head (the relay and the trainer rely on nothing else):
    state = head.initial_state(batch_size, device, dtype)
    outputs, new_state = head(features [B, T, D], state, reset [B] bool)
`reset[b]` zeroes the state of sequence b before it is used (a new video starts there). Running a
sequence in chunks, carrying new_state into the next call, equals running it whole.
"""
from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, ...] | None


def reset_state(state: State, reset: torch.Tensor, batch_dim: int = 1) -> State:
    """Zero the state of the sequences flagged in `reset` (B along `batch_dim` of every state tensor)."""
    if state is None:
        return None

    def keep(s: torch.Tensor) -> torch.Tensor:
        shape = [1] * s.ndim
        shape[batch_dim] = -1
        return (~reset).view(shape).to(s.dtype)

    return tuple(s * keep(s) for s in state)


def detach_state(state: State) -> State:
    return None if state is None else tuple(s.detach() for s in state)


class LSTMHead(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, hidden: int = 128, layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.hidden, self.layers = hidden, layers
        self.lstm = nn.LSTM(in_dim, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)

    def initial_state(self, batch_size: int, device=None, dtype=torch.float32) -> State:
        z = torch.zeros(self.layers, batch_size, self.hidden, device=device, dtype=dtype)
        return (z, z.clone())

    def forward(self, features, state, reset):
        h, c = reset_state(state, reset)
        out, (h, c) = self.lstm(features, (h, c))
        return self.classifier(self.drop(out)), (h, c)


class GRUHead(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, hidden: int = 128, layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.hidden, self.layers = hidden, layers
        self.gru = nn.GRU(in_dim, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)

    def initial_state(self, batch_size: int, device=None, dtype=torch.float32) -> State:
        return (torch.zeros(self.layers, batch_size, self.hidden, device=device, dtype=dtype),)

    def forward(self, features, state, reset):
        (h,) = reset_state(state, reset)
        out, h = self.gru(features, h)
        return self.classifier(self.drop(out)), (h,)


class LinearHead(nn.Module):
    """Frame-only baseline: no state, so no temporal context at all."""

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_dim, num_classes)

    def initial_state(self, batch_size: int, device=None, dtype=torch.float32) -> State:
        return None

    def forward(self, features, state, reset):
        return self.classifier(self.drop(features)), None


from .actionformer import ActionFormerHead  # noqa: E402
from .tcn import CausalTCNHead  # noqa: E402
from .transformer import CausalTransformerHead  # noqa: E402

# actionformer: a head over the whole sequence (temporal action localization, task=localization); not causal
HEADS = {"lstm": LSTMHead, "gru": GRUHead, "tcn": CausalTCNHead, "transformer": CausalTransformerHead,
         "linear": LinearHead, "actionformer": ActionFormerHead}


def is_causal(head: nn.Module) -> bool:
    """Causal heads run chunk by chunk with a carried state; the others need the whole sequence at once."""
    return getattr(head, "causal", True)
