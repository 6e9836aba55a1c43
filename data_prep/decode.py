"""Decode a video with PyAV: frames sampled by presentation timestamp, rotation applied, resized.

Sampling rule: for each target time T_k = start + k / fps the kept frame is the one *on screen* at T_k, i.e. the
last frame whose presentation time is <= T_k. Timestamps are compared as exact fractions of the stream's time
base, so a variable frame rate is sampled correctly and 10 fps → 5 fps never drifts by float rounding. Times are
measured from the first frame (containers may start at a non-zero pts).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from .sparse import Targets
from .sparse import decode as sparse_decode


class DecodeError(RuntimeError):
    pass


@dataclass(frozen=True)
class Resize:
    """Output frame size: a fixed (width, height), or the short side scaled to `short_side` (aspect kept)."""
    size: tuple[int, int] | None = None
    short_side: int | None = None

    def __post_init__(self):
        if (self.size is None) == (self.short_side is None):
            raise ValueError("give exactly one of size (width, height) or short_side")
        if min(self.size or (self.short_side,)) < 1:
            raise ValueError(f"frame size must be positive: {self}")

    def output(self, width: int, height: int) -> tuple[int, int]:
        if self.size is not None:
            return self.size
        scale = self.short_side / min(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))


@dataclass
class VideoInfo:
    source_fps: float = 0.0  # the stream's average frame rate
    rotation: int = 0  # degrees counter-clockwise the display matrix asks for (multiple of 90)
    duration: float = 0.0  # end of the last frame, seconds from the first frame; known after decoding
    declared: float = 0.0  # the length the header declares (0: none), known once the file is open


@dataclass
class Decoded:
    frames: np.ndarray  # [N, H, W, 3] uint8
    times: np.ndarray  # [N] presentation time of each kept frame, seconds from the first frame
    source_fps: float
    duration: float = 0.0
    rotation: int = 0


def _as_resize(size) -> Resize:
    if isinstance(size, Resize):
        return size
    if isinstance(size, int):
        return Resize(size=(size, size))
    return Resize(size=tuple(size))


def iter_frames(path: Path, fps: float, size, info: VideoInfo, start: float = 0.0, end: float | None = None,
                threads: int = 1, seek: bool = True, sparse: bool = True) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (time, RGB frame) for every target time in [start, end); fills `info` as it goes.
    `size`: an int (square), (width, height) or a Resize. `threads`: decoder threads. `seek`: a window
    starting after 0 s is decoded from the keyframe before it, not from the first frame. `sparse`: frames no
    target shows and none references are not decoded (sparse.py). Neither changes the frames that come out.
    Raises DecodeError for anything unreadable."""
    import av

    resize, start, end, fps = _as_resize(size), _exact(start), None if end is None else _exact(end), _exact(fps)
    container = _open(path, threads)
    try:
        try:
            stream = container.streams.video[0]
            info.source_fps = float(stream.average_rate or 0.0)
            info.declared = _declared_duration(container, stream) or 0.0
            # without a declared length, a window's end would be measured on a frame that may be skipped
            targets = Targets(start, fps, end, stream.time_base) if sparse and info.declared else None
            container, first, frames = _frames(path, container, start if seek else 0, threads, targets)
            stream = container.streams.video[0]
            stopped_early = yield from _sample(frames, stream, first, fps, resize, info, start, end)
        except (av.FFmpegError, EOFError) as e:
            raise DecodeError(f"decoding failed: {_reason(e)}") from e
        if stopped_early:  # the window ended before the video: its length is what the header says
            info.duration = info.declared or info.duration
        elif info.declared and info.duration < info.declared - max(1.0, 0.05 * info.declared):
            # a file cut short often still opens and decodes its first part
            raise DecodeError(f"truncated: decoded {info.duration:.1f} s of the {info.declared:.1f} s the header "
                              "declares")
    finally:
        container.close()


def _frames(path: Path, container, start: Fraction, threads: int, targets: Targets | None):
    """(container, the first frame if already decoded, the decoded frames from where sampling begins): from
    the keyframe before `start` where one serves, else from the first frame (reopened, if a seek was tried)."""
    if start > 0:
        first, frames = _positioned(container, container.streams.video[0], start, targets)
        if frames is not None:
            return container, first, frames
        if first is not None:
            container.close()
            container = _open(path, threads)
    return container, None, sparse_decode(container, container.streams.video[0], targets)


def _open(path: Path, threads: int):
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, EOFError, UnicodeDecodeError) as e:
        raise DecodeError(f"cannot open: {_reason(e)}") from e
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        container.close()
        raise DecodeError(f"no video stream ({', '.join(kinds)})")
    codec = container.streams.video[0].codec_context
    # AUTO: frame threading where the codec has it (H.264, HEVC, VP9...: encoders put one slice in a frame, so
    # slice threads alone have nothing to share; measured in bench/prep.py), slice threading where it has only
    # that. thread_count 1 is one thread (FFmpeg's default, 0, is one per core, whatever the other workers do).
    codec.thread_type, codec.thread_count = "AUTO", max(1, threads)
    return container


SEEK_BACK = (0, 2, 8, 32)  # seconds before the window to seek to, tried in turn


def _positioned(container, stream, start: Fraction, targets: Targets | None = None):
    """Decode the first frame (all times count from it), then seek to a keyframe on screen at or before
    `start`. Returns (first frame, frames from the keyframe on), or (first frame, None) when no seek serves:
    the keyframe found after a seek must be decodable on its own and not later than the window's start; a
    container's index may place a keyframe's presentation after the point it was sought for (B-frames),
    hence the steps back."""
    first = next(iter(container.decode(stream)), None)
    if first is None or first.pts is None:
        return first, None
    tb = stream.time_base
    for back in SEEK_BACK:
        if start - back <= 0:
            break
        container.seek(first.pts + math.floor((start - back) / tb), stream=stream, backward=True)
        if targets is not None:
            targets = replace(targets, origin=first.pts)
        frames = iter(sparse_decode(container, stream, targets))
        key = next(frames, None)
        if key is not None and key.pts is not None and key.key_frame and (key.pts - first.pts) * tb <= start:
            return first, itertools.chain([key], frames)
    return first, None


def _sample(frames, stream, first, fps: Fraction, resize: Resize, info: VideoInfo, start: Fraction, end):
    """The sampling rule on the decoded frames. Times are compared as integers in the stream's time base:
    target T_k keeps the last frame whose pts (from the first frame's) is <= floor(T_k / time_base), exactly
    the frame whose presentation time is <= T_k, with no Fraction arithmetic per decoded frame."""
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()  # one for the whole video: per-frame setup is the slow part
    tb = stream.time_base
    origin = None if first is None else first.pts
    if first is not None:
        info.rotation = round((first.rotation or 0) / 90) % 4 * 90
    prev = prev_pts = None
    k, cached = 0, None

    def target():
        return start + k / fps

    def threshold():  # the latest pts on screen at target()
        return math.floor(target() / tb), end is not None and target() >= end

    def convert(frame):
        rgb = reformatter.reformat(frame, *_decode_size(frame, resize, info), format="rgb24").to_ndarray()
        return np.ascontiguousarray(np.rot90(rgb, info.rotation // 90)) if info.rotation else rgb

    limit, past_end = threshold()
    for frame in frames:
        if frame.pts is None:
            raise DecodeError("frames without presentation timestamps")
        if origin is None:
            origin = frame.pts
            info.rotation = round((frame.rotation or 0) / 90) % 4 * 90
        pts = frame.pts - origin
        if prev is not None and pts <= prev_pts:
            continue  # a repeated or out-of-order timestamp (broken muxer): the earlier frame stands
        while prev is not None and pts > limit and not past_end:
            if prev_pts <= limit:
                cached = cached if cached is not None else convert(prev)
                yield float(prev_pts * tb), cached
            k += 1
            limit, past_end = threshold()
        if past_end:
            info.duration = float(pts * tb)
            return True
        prev, prev_pts, cached = frame, pts, None
    if prev is None:
        raise DecodeError("no decodable frames (empty or truncated video)")
    last_end = prev_pts * tb + (prev.duration * tb if prev.duration else 1 / Fraction(stream.average_rate or fps))
    info.duration = float(last_end)
    while target() < last_end and (end is None or target() < end):
        cached = cached if cached is not None else convert(prev)
        yield float(prev_pts * tb), cached
        k += 1
    return False


def _exact(seconds: float) -> Fraction:
    return Fraction(seconds).limit_denominator(1_000_000)


def _decode_size(frame, resize: Resize, info: VideoInfo) -> tuple[int, int]:
    """Size to ask the scaler for, so that after rotation the frame has the requested display size."""
    quarter = info.rotation in (90, 270)
    width, height = (frame.height, frame.width) if quarter else (frame.width, frame.height)
    out_w, out_h = resize.output(width, height)
    return (out_h, out_w) if quarter else (out_w, out_h)


def _declared_duration(container, stream) -> float | None:
    if stream.duration:
        return float(stream.duration * stream.time_base)
    return container.duration / 1e6 if container.duration else None


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def decode_video(path: Path, fps: float, size=64, start: float = 0.0, end: float | None = None,
                 threads: int = 1, seek: bool = True, sparse: bool = True) -> Decoded:
    """Decode into memory (small videos, tests). Arguments as in iter_frames."""
    info = VideoInfo()
    frames, times = [], []
    for t, rgb in iter_frames(path, fps, size, info, start, end, threads, seek, sparse):
        frames.append(rgb)
        times.append(t)
    if not frames:
        raise DecodeError(f"{path}: no frames in [{start}, {end}) s")
    return Decoded(np.stack(frames), np.asarray(times, np.float64), info.source_fps, info.duration, info.rotation)
