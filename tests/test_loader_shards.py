"""Splits of several shards, random clips and storage options give the batches of one plain shard."""
import json
import shutil

import numpy as np
import pytest
import torch

from framework.data.loader import SequenceLoader
from framework.data.manifest import Manifest, ManifestError


@pytest.fixture(scope="module")
def two_shard_data(tiny_data, tmp_path_factory):
    """tiny_data's train videos written into two shards (3 videos each, same order), one split `train`.
    The writer makes one shard per split, so we write splits train0/train1 and merge them in the manifest."""
    from data_prep.shards import ShardSpec, VideoItem, write_shards

    root = tmp_path_factory.mktemp("two_shards")
    for sub in ("videos", "annotations"):
        shutil.copytree(tiny_data / sub, root / sub)
    train = [v for v in Manifest.load(tiny_data).videos if v.split == "train"]
    items = [VideoItem(v.id, v.source, f"annotations/{v.id}.txt", f"train{i * 2 // len(train)}")
             for i, v in enumerate(train)]
    write_shards(root, items, ShardSpec(fps=5, size=32), labels=Manifest.load(tiny_data).labels, progress=False)
    raw = json.loads((root / "manifest.json").read_text())
    for entry in raw["videos"] + raw["shards"]:
        entry["split"] = "train"
    (root / "manifest.json").write_text(json.dumps(raw))
    assert len({v.shard for v in Manifest.load(root).videos}) == 2
    return root


def epoch(loader):
    return [b for b in loader]


def assert_same_batches(want, got):
    assert len(want) == len(got)
    for a, b in zip(want, got):
        for name in ("frames", "labels", "valid", "starts", "ends", "video", "frame", "aug_seed"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_two_shards_stream_exactly_like_one(tiny_data, two_shard_data):
    one = SequenceLoader(tiny_data, "train", 1, 2, batch_size=2, seq_len=8, seed=2)
    two = SequenceLoader(two_shard_data, "train", 1, 2, batch_size=2, seq_len=8, seed=2)
    assert len(two.shard_paths) == 2
    assert_same_batches(epoch(one), epoch(two))


def test_two_shards_resume_mid_epoch(tiny_data, two_shard_data):
    reference = epoch(SequenceLoader(tiny_data, "train", 0, 1, 3, 8, seed=4))
    resumed = SequenceLoader(two_shard_data, "train", 0, 1, 3, 8, seed=4)
    resumed.load_state_dict({"epoch": 0, "step": 5})  # what state_dict() holds 5 batches in (test_loader.py)
    assert_same_batches(reference[5:], epoch(resumed))


def test_random_clips_with_stride(tiny_data, two_shard_data):
    T, stride = 4, 3
    loader = SequenceLoader(two_shard_data, "train", 0, 1, 2, T, seed=1, sampling="clips", stride=stride)
    lengths = [v.num_frames for v in loader.videos]
    batches = epoch(loader)
    clips = {}
    for b in batches:
        assert b.starts.all(), "a clip never continues a carried state"
        for lane in range(2):
            v = int(b.video[lane])
            if v < 0:
                assert not b.valid[lane].any()
                continue
            n = int(b.valid[lane].sum())
            np.testing.assert_array_equal(np.diff(b.frame[lane, :n].numpy()), stride)
            last = int(b.frame[lane, n - 1])
            assert last < lengths[v] and bool(b.ends[lane]) == (last + stride >= lengths[v])
            clips[v] = clips.get(v, 0) + 1
    span = (T - 1) * stride + 1
    assert clips == {v: max(1, n // span) for v, n in enumerate(lengths)}, "clips per video ∝ its length"
    # the same clips, read from one shard; a new epoch draws new clips
    one = SequenceLoader(tiny_data, "train", 0, 1, 2, T, seed=1, sampling="clips", stride=stride)
    assert_same_batches(batches, epoch(one))
    assert [b.frame.tolist() for b in epoch(one)] != [b.frame.tolist() for b in batches]
    # resuming at step 4 of epoch 0 gives the rest of that epoch's clips
    resumed = SequenceLoader(two_shard_data, "train", 0, 1, 2, T, seed=1, sampling="clips", stride=stride)
    resumed.load_state_dict({"epoch": 0, "step": 4})
    assert_same_batches(batches[4:], epoch(resumed))


def test_process_cache_reads_the_same_frames(tiny_data):
    want = epoch(SequenceLoader(tiny_data, "test", 0, 1, 2, 8, shuffle=False))
    got = epoch(SequenceLoader(tiny_data, "test", 0, 1, 2, 8, shuffle=False, os_cache=False, num_workers=2))
    assert_same_batches(want, got)


def test_bad_sampling_options_are_refused(tiny_data):
    with pytest.raises(ValueError, match="sampling='frames'"):
        SequenceLoader(tiny_data, "train", 0, 1, 2, 8, sampling="frames")
    with pytest.raises(ValueError, match="stride=2"):
        SequenceLoader(tiny_data, "train", 0, 1, 2, 8, stride=2)


def test_video_outside_its_shard_is_refused(two_shard_data, tmp_path):
    for f in two_shard_data.iterdir():
        (tmp_path / f.name).symlink_to(f)
    raw = json.loads((two_shard_data / "manifest.json").read_text())
    raw["videos"][-1]["num_frames"] += 1  # one frame more than its shard holds
    (tmp_path / "manifest.json").unlink()
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=f"video {raw['videos'][-1]['id']}: frames .* lie outside shard"):
        SequenceLoader(tmp_path, "train", 0, 1, 2, 8)
