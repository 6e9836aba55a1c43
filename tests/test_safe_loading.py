"""Everything loaded from a checkpoint is loaded with torch.load(weights_only=True) (framework/checkpoint.py):
a run folder from someone else cannot run code. A real checkpoint of a real engine (tests/robust_check.py),
then the same files carrying a pickled object whose unpickling creates a file."""
import pytest


def test_our_checkpoints_load_safely(robust_check):
    seen = robust_check["safe_loading"]
    assert seen["complete"] and seen["loads"] == ["rng", "state"]  # RNG states as tensors and plain values


@pytest.mark.parametrize("name", ["trainer_state_rank0.pt", "mp_rank_00_model_states.pt"])
def test_a_checkpoint_carrying_a_pickled_object_is_refused(robust_check, name):
    seen = robust_check["safe_loading"][name]
    assert seen["error"].endswith(f"{name} holds a pickled io.open, not only tensors and plain values: refused "
                                  "(loading it could run code)")
    assert not seen["created_when_refused"]
    assert seen["created_unsafely"], "the payload is real: an unsafe load runs it"
