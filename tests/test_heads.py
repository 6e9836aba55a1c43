"""Carrying the state across chunks equals running the whole sequence."""
import pytest
import torch

from framework.models.heads import LinearHead, LSTMHead, detach_state


@pytest.mark.parametrize("layers", [1, 2])
def test_lstm_chunked_equals_whole(layers):
    torch.manual_seed(0)
    head = LSTMHead(12, 5, hidden=16, layers=layers)
    x = torch.randn(3, 24, 12)
    no_reset = torch.zeros(3, dtype=torch.bool)
    whole, _ = head(x, head.initial_state(3), no_reset)
    state, outs = head.initial_state(3), []
    for chunk in x.split(8, dim=1):
        out, state = head(chunk, state, no_reset)
        state = detach_state(state)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), whole, rtol=1e-6, atol=1e-6)


def test_reset_mask_starts_only_the_flagged_sequences_afresh():
    torch.manual_seed(0)
    head = LSTMHead(6, 3, hidden=8)
    first, second = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    _, state = head(first, head.initial_state(2), torch.zeros(2, dtype=torch.bool))
    out, _ = head(second, state, torch.tensor([True, False]))
    fresh, _ = head(second, head.initial_state(2), torch.ones(2, dtype=torch.bool))
    carried, _ = head(second, state, torch.zeros(2, dtype=torch.bool))
    torch.testing.assert_close(out[0], fresh[0])
    torch.testing.assert_close(out[1], carried[1])
    assert not torch.allclose(out[0], carried[0])


def test_linear_head_has_no_state():
    head = LinearHead(6, 3)
    out, state = head(torch.randn(2, 4, 6), head.initial_state(2), torch.zeros(2, dtype=torch.bool))
    assert out.shape == (2, 4, 3) and state is None
