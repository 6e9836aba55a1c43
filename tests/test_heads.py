"""Carrying the state across chunks equals running the whole sequence."""
import pytest
import torch

from framework.models.heads import HEADS, GRUHead, LinearHead, LSTMHead, detach_state
from framework.models.tcn import CausalTCNHead
from framework.models.transformer import CausalTransformerHead

STATEFUL = {
    "lstm": lambda: LSTMHead(12, 5, hidden=16, layers=2),
    "gru": lambda: GRUHead(12, 5, hidden=16, layers=2),
    "tcn": lambda: CausalTCNHead(12, 5, hidden=8, layers=4, stages=2),
    "transformer": lambda: CausalTransformerHead(12, 5, hidden=16, layers=2, heads=4, window=6),
}


def run_chunked(head, x, chunk, reset_first, detach=False):
    state, outs = head.initial_state(x.shape[0], dtype=x.dtype), []
    for i, part in enumerate(x.split(chunk, dim=1)):
        reset = reset_first if i == 0 else torch.zeros(x.shape[0], dtype=torch.bool)
        out, state = head(part, state, reset)
        state = detach_state(state) if detach else state
        outs.append(out)
    return torch.cat(outs, 1)


def grads(head, loss):
    return torch.autograd.grad(loss, list(head.parameters()), allow_unused=True)


@pytest.mark.parametrize("name", list(STATEFUL))
@pytest.mark.parametrize("chunk", [1, 5, 8])
def test_chunks_with_carried_state_equal_the_whole_sequence(name, chunk):
    """Outputs, and with the state not detached, gradients of every parameter."""
    torch.manual_seed(0)
    head = STATEFUL[name]().double()
    x = torch.randn(3, 24, 12, dtype=torch.float64)
    start = torch.ones(3, dtype=torch.bool)
    whole, _ = head(x, head.initial_state(3, dtype=torch.float64), start)
    chunked = run_chunked(head, x, chunk, start)
    torch.testing.assert_close(chunked, whole, rtol=1e-10, atol=1e-10)
    target = torch.randn_like(whole)
    for g_whole, g_chunk in zip(grads(head, (whole * target).sum()), grads(head, (chunked * target).sum())):
        torch.testing.assert_close(g_chunk, g_whole, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", list(STATEFUL))
def test_reset_starts_flagged_sequences_afresh(name):
    torch.manual_seed(0)
    head = STATEFUL[name]()
    first, second = torch.randn(2, 7, 12), torch.randn(2, 7, 12)
    _, state = head(first, head.initial_state(2), torch.ones(2, dtype=torch.bool))
    out, _ = head(second, state, torch.tensor([True, False]))
    fresh, _ = head(second, head.initial_state(2), torch.ones(2, dtype=torch.bool))
    carried, _ = head(second, state, torch.zeros(2, dtype=torch.bool))
    torch.testing.assert_close(out[0], fresh[0])
    torch.testing.assert_close(out[1], carried[1])
    assert not torch.allclose(out[0], carried[0]), "the state matters, so the reset is visible"


def test_transformer_sees_only_its_window():
    """A frame more than W back cannot change the output."""
    torch.manual_seed(0)
    head = CausalTransformerHead(12, 5, hidden=16, layers=1, heads=4, window=4)
    x = torch.randn(1, 10, 12)
    y = x.clone()
    y[0, 2] += 5.0
    start = torch.ones(1, dtype=torch.bool)
    a, _ = head(x, head.initial_state(1), start)
    b, _ = head(y, head.initial_state(1), start)
    torch.testing.assert_close(a[0, :2], b[0, :2])  # the past does not see the future
    assert not torch.allclose(a[0, 2:6], b[0, 2:6])  # frames 2..5 have frame 2 in their window
    torch.testing.assert_close(a[0, 6:], b[0, 6:])  # frames 6.. do not


def test_all_heads_are_registered():
    # actionformer sees the whole sequence (no state, not causal): tests/test_localization.py
    assert set(STATEFUL) | {"linear", "actionformer"} == set(HEADS)


def test_linear_head_has_no_state():
    head = LinearHead(6, 3)
    out, state = head(torch.randn(2, 4, 6), head.initial_state(2), torch.zeros(2, dtype=torch.bool))
    assert out.shape == (2, 4, 3) and state is None
