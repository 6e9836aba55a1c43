"""Whole-video streaming: consecutive frames, correct resets, disjoint balanced ranks, exact resume."""
import numpy as np
import pytest
import torch

from framework.data.loader import SequenceLoader
from framework.data.order import epoch_plan


def lanes(loader):
    """Per lane: the list of (video, frames, valid, start) sequences of one epoch."""
    out = [[] for _ in range(loader.batch_size)]
    for b in loader:
        for i in range(loader.batch_size):
            out[i].append((int(b.video[i]), b.frame[i].numpy(), b.valid[i].numpy(), bool(b.starts[i]),
                           bool(b.ends[i])))
    return out


def test_sequences_are_consecutive_and_resets_mark_new_streams(tiny_data):
    loader = SequenceLoader(tiny_data, "train", 0, 1, batch_size=2, seq_len=8, seed=3)
    lengths = [v.num_frames for v in loader.videos]
    for lane in lanes(loader):
        prev = None
        for video, frames, valid, start, end in lane:
            if video < 0:
                assert not valid.any()
                continue
            n = valid.sum()
            assert valid[:n].all() and not valid[n:].any()
            np.testing.assert_array_equal(np.diff(frames[:n]), 1)  # consecutive frames
            continues = prev is not None and prev[0] == video and prev[1] == frames[0]
            # the state is reset exactly where the stream does not continue the previous sequence
            assert start == (not continues)
            assert end == (frames[n - 1] == lengths[video] - 1)
            prev = (video, frames[n - 1] + 1)


def test_epoch_covers_every_frame_once_with_disjoint_ranks():
    lengths = [37, 80, 15, 64, 90, 23, 51]
    world, B, T = 2, 2, 8
    plan = epoch_plan(lengths, world, B, T, epoch=4, seed=0, shuffle=True)
    assert len({len(p) for p in plan}) == 1, "every rank runs the same number of steps"
    seen, owner = {}, {}
    for rank, steps in enumerate(plan):
        for batch in steps:
            for c in batch:
                if c.video >= 0:
                    assert owner.setdefault(c.video, rank) == rank, "a video belongs to one rank"
                    for f in range(c.offset, c.offset + c.length):
                        seen[(c.video, f)] = seen.get((c.video, f), 0) + 1
    assert seen == {(v, f): 1 for v, n in enumerate(lengths) for f in range(n)}


def test_ranks_balanced_by_frames():
    lengths = list(np.random.default_rng(0).integers(40, 400, size=40))
    plan = epoch_plan(lengths, world=4, batch_size=2, T=16, epoch=0, seed=0, shuffle=True)
    frames = [sum(c.length for batch in steps for c in batch) for steps in plan]
    assert max(frames) / min(frames) < 1.05
    padding = sum(c.length == 0 for steps in plan for batch in steps for c in batch)
    chunks = sum(len(batch) for steps in plan for batch in steps)
    assert padding / chunks < 0.05, "lanes balanced: little padding at the end of an epoch"


def test_shuffle_changes_with_epoch_and_is_reproducible():
    lengths = [30, 40, 50, 60, 70, 80]
    a = epoch_plan(lengths, 1, 2, 8, epoch=0, seed=0, shuffle=True)
    assert a == epoch_plan(lengths, 1, 2, 8, epoch=0, seed=0, shuffle=True)
    assert a != epoch_plan(lengths, 1, 2, 8, epoch=1, seed=0, shuffle=True)


@pytest.mark.parametrize("stop", [0, 3, 11])
def test_resume_yields_the_batch_that_would_have_come(tiny_data, stop):
    def batches(loader, n):
        out = []
        while len(out) < n:
            out += [(b.frame.clone(), b.video.clone(), b.starts.clone()) for b in loader]
        return out[:n]

    reference = batches(SequenceLoader(tiny_data, "train", 0, 1, 2, 8, seed=5), 40)
    first = SequenceLoader(tiny_data, "train", 0, 1, 2, 8, seed=5)
    it = iter(first)
    for _ in range(stop):
        next(it)
    state = first.state_dict()
    resumed = SequenceLoader(tiny_data, "train", 0, 1, 2, 8, seed=5)
    resumed.load_state_dict(state)
    for want, got in zip(reference[stop:], batches(resumed, 40 - stop)):
        for w, g in zip(want, got):
            assert np.array_equal(w, g)


def test_sequence_parallel_parts_are_the_consecutive_pieces_of_the_whole_chunks(tiny_data):
    """The ranks of an SP group read only their part; side by side the parts are the whole batch. Only the
    first part resets the state; a video ends in the part holding its last frame; `lengths` is the whole's."""
    whole = list(SequenceLoader(tiny_data, "train", 0, 1, batch_size=2, seq_len=9, seed=3))
    parts = [list(SequenceLoader(tiny_data, "train", 0, 1, batch_size=2, seq_len=9, seed=3, part=(k, 3)))
             for k in range(3)]
    assert all(len(p) == len(whole) for p in parts)
    for step, w in enumerate(whole):
        ps = [p[step] for p in parts]
        for field in ("frames", "labels", "valid", "frame"):
            joined = torch.cat([getattr(p, field) for p in ps], 1)
            assert torch.equal(joined[w.valid], getattr(w, field)[w.valid]), field
        assert torch.equal(torch.cat([p.valid for p in ps], 1), w.valid)
        assert torch.equal(ps[0].starts, w.starts) and not ps[1].starts.any() and not ps[2].starts.any()
        assert torch.equal(ps[0].ends | ps[1].ends | ps[2].ends, w.ends)
        assert sum(p.ends.int() for p in ps).max() <= 1
        assert all(torch.equal(p.lengths, w.valid.sum(1)) and torch.equal(p.aug_seed, w.aug_seed) for p in ps)


def test_a_part_that_does_not_divide_the_chunk_is_refused(tiny_data):
    with pytest.raises(ValueError, match=r"part=\(0, 3\): need 0 <= part < parts and seq_len=8 divisible"):
        SequenceLoader(tiny_data, "train", 0, 1, batch_size=2, seq_len=8, part=(0, 3))
