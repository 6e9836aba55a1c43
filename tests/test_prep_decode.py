"""Temporal sampling by presentation timestamp (VFR included), rotation metadata, resizing, JPEG bytes."""
from fractions import Fraction

import numpy as np
import pytest
from prep_media import PERIOD, frame_index, write_video

from data_prep.decode import DecodeError, Resize, decode_video


def shown_at(times, targets):
    """Index of the frame on screen at each target time: the last one presented at or before it."""
    return [int(np.searchsorted(times, t, side="right")) - 1 for t in targets]


def test_variable_frame_rate_is_sampled_by_timestamp(tmp_path):
    times = [0.0, 0.05, 0.3, 0.35, 0.9, 1.0, 1.45, 2.0]
    path = write_video(tmp_path / "vfr.mp4", len(times), times=times)
    d = decode_video(path, fps=10, size=32)
    targets = np.arange(len(d.frames)) / 10
    want = shown_at(times, targets)
    assert [frame_index(f) for f in d.frames] == want
    np.testing.assert_allclose(d.times, np.asarray(times)[want])
    assert targets[-1] < d.duration <= targets[-1] + 0.1, "sampling runs to the end of the last frame"


def test_constant_rate_downsampling_is_exact(tmp_path):
    """25 fps sampled at 1 fps keeps frames 0, 25, 50, ... (no drift from float rounding)."""
    path = write_video(tmp_path / "cfr.mp4", 130, fps=25)
    d = decode_video(path, fps=1, size=16)
    assert [frame_index(f) for f in d.frames] == [i % PERIOD for i in (0, 25, 50, 75, 100, 125)]
    np.testing.assert_allclose(d.times, [0, 1, 2, 3, 4, 5])


def test_time_window(tmp_path):
    path = write_video(tmp_path / "w.mp4", 50, fps=10)
    d = decode_video(path, fps=2, size=16, start=1.0, end=3.0)
    np.testing.assert_allclose(d.times, [1.0, 1.5, 2.0, 2.5])
    assert [frame_index(f) for f in d.frames] == [10, 15, 20, 25]


@pytest.mark.parametrize("rotation,corner", [(0, (0, 0)), (90, (-1, 0)), (180, (-1, -1)), (-90, (0, -1))])
def test_rotation_metadata_is_applied(tmp_path, rotation, corner):
    """A landscape 64x32 frame with a white top-left block, stored with a display matrix rotating it
    counter-clockwise by `rotation`: decoded frames come out as displayed."""
    path = write_video(tmp_path / "rot.mp4", 3, width=64, height=32, rotation=rotation, marker=True)
    d = decode_video(path, fps=10, size=Resize(short_side=32))
    assert d.rotation == rotation % 360
    assert d.frames.shape[1:3] == ((64, 32) if rotation % 180 else (32, 64))
    frame = d.frames[0].mean(-1)
    r, c = corner
    assert frame[r, c] > 200, "the marker is in the rotated corner"
    assert frame[-1 - r, -1 - c] < 100


def test_resize_short_side_and_fixed(tmp_path):
    path = write_video(tmp_path / "r.mp4", 2, width=96, height=64)
    assert decode_video(path, fps=5, size=Resize(short_side=32)).frames.shape[1:] == (32, 48, 3)
    assert decode_video(path, fps=5, size=(40, 30)).frames.shape[1:] == (30, 40, 3)
    assert decode_video(path, fps=5, size=24).frames.shape[1:] == (24, 24, 3)


def test_unreadable_files_raise_decode_error(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video\n")
    for name in ("empty.mp4", "text.mp4"):
        with pytest.raises(DecodeError):
            decode_video(tmp_path / name, fps=5, size=16)


def test_staged_jpeg_equals_ffcv_encoder():
    """Staging encodes frames itself; the shard must hold exactly what FFCV's writer would have encoded."""
    from framework.data import jit_cache

    jit_cache.enable()
    from ffcv.fields.rgb_image import encode_jpeg

    from data_prep.stage import encode_frame

    rgb = np.random.default_rng(0).integers(0, 255, (24, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(encode_frame(rgb, False, 85), encode_jpeg(rgb, 85))


# -- seeking to the keyframe before a window, decoder threads ------------------------------------------------
@pytest.fixture(scope="module")
def gops(tmp_path_factory):
    """4 s at 25 fps, a keyframe every 12 frames (0.48 s), B-frames: the path and its keyframe times."""
    import av

    path = write_video(tmp_path_factory.mktemp("gops") / "gops.mp4", 100, fps=25, keyint=12, bframes=2,
                       texture=True)
    with av.open(str(path)) as c:
        keys = [float(f.pts * f.time_base) for f in c.decode(c.streams.video[0]) if f.key_frame]
    assert keys == pytest.approx([0.48 * i for i in range(9)])
    return path, keys


# at a keyframe, just after it, one source frame after it, just before one, mid-GOP, the last GOP, past the end
WINDOWS = [(1.44, 2.5), (1.4401, 2.0), (1.48, 1.9), (1.4399, 2.2), (2.7, 3.3), (3.85, 4.5), (3.99, None),
           (0.3, 1.0), (2.0, None)]


@pytest.mark.parametrize("start,end", WINDOWS)
@pytest.mark.parametrize("fps", [10, 25])
def test_window_seeks_and_samples_the_frames_of_a_decode_from_the_start(gops, start, end, fps):
    path, _ = gops
    sought = decode_video(path, fps=fps, size=24, start=start, end=end, seek=True)
    whole = decode_video(path, fps=fps, size=24, start=start, end=end, seek=False)
    np.testing.assert_array_equal(sought.frames, whole.frames)
    np.testing.assert_array_equal(sought.times, whole.times)
    assert (sought.duration, sought.rotation, sought.source_fps) == (whole.duration, whole.rotation, whole.source_fps)
    assert sought.times[0] <= start < sought.times[0] + 1 / 25 + 1e-9, "the first frame is the one on screen"


@pytest.mark.parametrize("start", [0.3, 1.4399, 1.44, 1.48, 3.99])
def test_window_decoding_starts_at_the_last_keyframe_before_it(gops, start):
    from data_prep.decode import _exact, _open, _positioned

    path, keys = gops
    container = _open(path, threads=1)
    stream = container.streams.video[0]
    first, frames = _positioned(container, stream, _exact(start))
    key = next(frames)
    container.close()
    assert first.pts == 0 and key.key_frame
    assert float(key.pts * stream.time_base) == pytest.approx(max(k for k in keys if k <= start))


def test_decoder_threads_give_the_same_frames(gops):
    path, _ = gops
    one = decode_video(path, fps=25, size=(64, 48), threads=1)
    for threads in (2, 3):
        np.testing.assert_array_equal(decode_video(path, fps=25, size=(64, 48), threads=threads).frames, one.frames)


def test_window_without_a_usable_keyframe_decodes_from_the_start(gops, monkeypatch):
    """When no seek lands on a keyframe on screen at the window's start (here: no seek is tried at all),
    the video is decoded from its first frame, with the same result."""
    from data_prep import decode

    path, _ = gops
    want = decode_video(path, fps=10, size=24, start=2.7, end=3.3, seek=False)
    monkeypatch.setattr(decode, "SEEK_BACK", ())
    got = decode_video(path, fps=10, size=24, start=2.7, end=3.3)
    np.testing.assert_array_equal(got.frames, want.frames)
    np.testing.assert_array_equal(got.times, want.times)


# -- not decoding what no target shows (data_prep/sparse.py) ---------------------------------------------------
@pytest.mark.parametrize("fps", [1, 3, 7.3, 10, 25, 50])
@pytest.mark.parametrize("window", [(0.0, None), (1.44, 2.5), (2.7, 3.3), (3.85, None)])
def test_sparse_decoding_samples_the_frames_of_a_full_decode(gops, fps, window):
    path, _ = gops
    start, end = window
    sparse = decode_video(path, fps=fps, size=24, start=start, end=end, sparse=True)
    full = decode_video(path, fps=fps, size=24, start=start, end=end, sparse=False)
    np.testing.assert_array_equal(sparse.frames, full.frames)
    np.testing.assert_array_equal(sparse.times, full.times)
    assert sparse.duration == full.duration


@pytest.mark.parametrize("fps,skipped", [(1, True), (25, False)])
def test_sparse_decoding_skips_only_frames_no_target_shows(gops, fps, skipped):
    """At 1 fps from 25 fps most B-frames (non-reference) are not decoded; at the source rate all are."""
    import av

    from data_prep.sparse import Targets, decode

    path, _ = gops
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        every = [f.pts for f in c.decode(stream)]
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        time_base = stream.time_base  # read while the file is open: a closed container's stream has none
        some = [f.pts for f in decode(c, stream, Targets(Fraction(0), Fraction(fps), None, time_base))]
    assert set(some) <= set(every) and some == sorted(some)
    assert (len(some) < 0.8 * len(every)) if skipped else (some == every)
    kept = [every[int(np.searchsorted(every, k / fps / time_base, side="right")) - 1] for k in range(4 * fps)]
    assert set(kept) <= set(some), "every frame a target shows is decoded"
