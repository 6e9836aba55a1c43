"""Shards: what the writer puts in is what the loader gives back; corruption is caught."""
import numpy as np
import pytest

from data_prep.annotations import read_phase_file
from data_prep.decode import decode_video
from data_prep.shards import sampled_labels
from framework.data.loader import SequenceLoader
from framework.data.manifest import Manifest, ManifestError, check_shard


def all_frames(root, split):
    """Every valid frame the loader yields, per video, in order."""
    loader = SequenceLoader(root, split, 0, 1, batch_size=2, seq_len=8, shuffle=False)
    out = {}
    for b in loader:
        for i in range(2):
            if b.video[i] >= 0:
                n = int(b.valid[i].sum())
                entry = out.setdefault(int(b.video[i]), {"frames": [], "labels": [], "index": []})
                entry["frames"].append(b.frames[i, :n].numpy())
                entry["labels"].append(b.labels[i, :n].numpy())
                entry["index"].append(b.frame[i, :n].numpy())
    return loader, {v: {k: np.concatenate(x) for k, x in e.items()} for v, e in out.items()}


@pytest.mark.parametrize("split", ["train", "test"])
def test_round_trip(tiny_data, split):
    loader, got = all_frames(tiny_data, split)
    manifest = loader.manifest
    assert sorted(got) == list(range(len(loader.videos)))
    for v, video in enumerate(loader.videos):
        decoded = decode_video(tiny_data / video.source, fps=5, size=32)
        phases = read_phase_file(tiny_data / "annotations" / f"{video.id}.txt")
        labels = [manifest.labels.index(p) for p in sampled_labels(phases, decoded.times, decoded.source_fps, "")]
        assert video.num_frames == len(decoded.frames)
        np.testing.assert_array_equal(got[v]["index"], np.arange(video.num_frames))
        np.testing.assert_array_equal(got[v]["labels"], labels)
        frames, want = got[v]["frames"].astype(float), decoded.frames.astype(float)
        assert np.abs(frames - want).mean() < 6.0, "frames differ by more than JPEG loss"
        # and each frame is the right one: its neighbours in time are further away than JPEG loss
        assert np.abs(frames[1:] - want[1:]).mean() < np.abs(frames[1:] - want[:-1]).mean()


def test_raw_storage_round_trip_is_exact(tiny_data, tmp_path):
    import shutil

    from data_prep.shards import ShardSpec, VideoItem, write_shards

    root = tmp_path / "raw"
    shutil.copytree(tiny_data / "videos", root / "videos")
    shutil.copytree(tiny_data / "annotations", root / "annotations")
    source = Manifest.load(tiny_data)
    items = [VideoItem(v.id, v.source, f"annotations/{v.id}.txt", v.split) for v in source.videos][:3]
    write_shards(root, items, ShardSpec(fps=5, size=32, raw=True), progress=False)
    loader, got = all_frames(root, "train")
    for v, video in enumerate(loader.videos):
        decoded = decode_video(root / video.source, fps=5, size=32)
        np.testing.assert_array_equal(got[v]["frames"], decoded.frames)


def test_sampling_rate_and_labels_follow_timestamps(tiny_data):
    """Source at 10 fps, shards at 5 fps: every second source frame, labelled by its own annotation row."""
    video = Manifest.load(tiny_data).videos[0]
    decoded = decode_video(tiny_data / video.source, fps=5, size=32)
    np.testing.assert_allclose(np.diff(decoded.times), 0.2, atol=1e-6)


def test_truncated_shard_is_refused(tiny_data, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(tiny_data, copy)
    shard = copy / "train.beton"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(ManifestError, match="truncated"):
        SequenceLoader(copy, "train", 0, 1, 2, 8)


def test_verify_reports_corrupt_shard(tiny_data, tmp_path):
    import shutil

    from data_prep.cli import main

    copy = tmp_path / "data"
    shutil.copytree(tiny_data, copy)
    assert main(["verify", "--root", str(copy)]) == 0
    data = bytearray((copy / "test.beton").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "test.beton").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256"):
        check_shard(copy, Manifest.load(copy).shard("test.beton"), full=True)
    assert main(["verify", "--root", str(copy)]) == 1


def test_manifest_paths_cannot_escape_root(tiny_data, tmp_path):
    import json
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(tiny_data, copy)
    raw = json.loads((copy / "manifest.json").read_text())
    raw["videos"][0]["source"] = "../../etc/passwd"
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="relative"):
        Manifest.load(copy)
