"""Clip-consistent augmentation: one transform per sequence, independent lanes, seeded, exact on resume."""
import pytest
import torch

from framework.config import ConfigError, load_config
from framework.data.augment import AugmentSpec, ClipAugment, augment_clips, build_augment
from framework.data.loader import SequenceLoader

SEEDS = torch.tensor([11, 12, 13, 14])


def still_sequences(B=4, T=6, H=24, W=32):
    """Each lane: one random frame repeated T times (different per lane)."""
    g = torch.Generator().manual_seed(0)
    frame = torch.randint(0, 256, (B, 1, H, W, 3), generator=g, dtype=torch.uint8)
    return frame.expand(B, T, H, W, 3).contiguous()


def test_all_frames_of_a_sequence_get_the_same_transform():
    out = augment_clips(still_sequences(), SEEDS)
    assert out.shape == (4, 6, 24, 32, 3) and out.dtype == torch.float32
    for b in range(4):
        for t in range(6):
            assert torch.equal(out[b, t], out[b, 0])
    assert (out >= 0).all() and (out <= 255).all()


def test_a_clip_augmented_whole_equals_its_frames_augmented_one_by_one():
    """The frames of a lane are resampled together (as channels of one image, one grid per lane); each must
    come out exactly as if it were augmented alone, as a chunk of a streamed video would be."""
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (4, 5, 24, 32, 3), generator=g, dtype=torch.uint8)
    whole = augment_clips(frames, SEEDS)
    alone = torch.cat([augment_clips(frames[:, t:t + 1], SEEDS) for t in range(5)], dim=1)
    assert torch.equal(whole, alone)
    assert not torch.equal(whole[:, 0], whole[:, 1])  # different frames stay different


def test_lanes_are_independent_and_depend_only_on_their_seed():
    same = still_sequences(B=1).expand(4, -1, -1, -1, -1)
    out = augment_clips(same, SEEDS)
    assert all(not torch.allclose(out[a], out[b]) for a in range(4) for b in range(a))
    # a lane's result does not depend on its position in the batch or on the other lanes
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.equal(augment_clips(same, SEEDS[perm]), out[perm])


def test_deterministic_given_the_seed():
    frames = still_sequences()
    assert torch.equal(augment_clips(frames, SEEDS), augment_clips(frames, SEEDS.clone()))
    assert not torch.allclose(augment_clips(frames, SEEDS), augment_clips(frames, SEEDS + 100))


def test_full_crop_without_jitter_is_identity_and_flip_mirrors():
    frames = still_sequences()
    keep = AugmentSpec(scale=(1.0, 1.0), ratio=(32 / 24, 32 / 24), flip=0.0, jitter=0.0)
    torch.testing.assert_close(augment_clips(frames, SEEDS, keep), frames.float(), atol=1e-3, rtol=0)
    mirror = AugmentSpec(scale=(1.0, 1.0), ratio=(32 / 24, 32 / 24), flip=1.0, jitter=0.0)
    torch.testing.assert_close(augment_clips(frames, SEEDS, mirror), frames.flip(3).float(), atol=1e-3, rtol=0)


def test_none_leaves_frames_untouched():
    frames = still_sequences()
    assert ClipAugment("none")(frames, None) is frames


def test_seeds_follow_sequences_and_resume_exactly(tiny_data):
    def seeds(loader, n):
        out = []
        while len(out) < n:
            out += [(b.aug_seed.clone(), b.starts.clone()) for b in loader]
        return out[:n]

    reference = seeds(SequenceLoader(tiny_data, "train", 0, 1, 2, 8, seed=5), 30)
    for (seed, starts), (prev, _) in zip(reference[1:], reference):
        # a lane keeps its transform while its video streams on, and draws a new one where its state resets
        assert torch.equal(seed == prev, ~starts)
    resumed = SequenceLoader(tiny_data, "train", 0, 1, 2, 8, seed=5)
    resumed.load_state_dict({"epoch": 0, "step": 7})  # the state 7 batches in (see test_loader.py)
    for (want, _), (got, _) in zip(reference[7:], seeds(resumed, 23)):
        assert torch.equal(want, got)


def test_config_builds_the_trainer_hook():
    default, _ = load_config([])
    frames = still_sequences()
    assert build_augment(default.data)(frames, SEEDS) is frames, "default: frames reach the model as before"
    cfg, _ = load_config(["data.augment=clip", "data.augment_scale=0.5", "data.augment_jitter=0.1"])
    spec = AugmentSpec(scale=(0.5, 1.0), jitter=0.1)
    assert torch.equal(build_augment(cfg.data)(frames, SEEDS), augment_clips(frames, SEEDS, spec))


@pytest.mark.parametrize("override, message", [
    ("data.augment=random", "data.augment='random': choose none or clip"),
    ("data.augment_scale=0", "data.augment_scale must be in (0, 1], got 0.0"),
    ("data.augment_jitter=1.5", "data.augment_jitter must be in [0, 1), got 1.5"),
    ("data.sampling=frames", "data.sampling='frames': choose stream or clips"),
    ("data.clip_stride=2", "data.clip_stride=2: must be >= 1, and > 1 only with data.sampling=clips"),
])
def test_bad_augment_config_is_one_line(override, message):
    with pytest.raises(ConfigError) as e:
        load_config([override])
    assert str(e.value) == message
