"""Decode a video with PyAV: frames sampled by presentation timestamp, rotation applied, resized.

Sampling rule: for each target time T_k = start + k / fps the kept frame is the one *on screen* at T_k, i.e. the
last frame whose presentation time is <= T_k. Timestamps are compared as exact fractions of the stream's time
base, so a variable frame rate is sampled correctly and 10 fps → 5 fps never drifts by float rounding. Times are
measured from the first frame (containers may start at a non-zero pts).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np


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


def iter_frames(path: Path, fps: float, size, info: VideoInfo, start: float = 0.0,
                end: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (time, RGB frame) for every target time in [start, end); fills `info` as it goes.
    `size`: an int (square), (width, height) or a Resize. Raises DecodeError for anything unreadable."""
    import av

    resize = _as_resize(size)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, EOFError, UnicodeDecodeError) as e:
        raise DecodeError(f"cannot open: {_reason(e)}") from e
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise DecodeError(f"no video stream ({', '.join(kinds)})")
        stream = container.streams.video[0]
        info.source_fps = float(stream.average_rate or 0.0)
        try:
            stopped_early = yield from _sample(container, stream, _exact(fps), resize, info, _exact(start),
                                               None if end is None else _exact(end))
        except (av.FFmpegError, EOFError) as e:
            raise DecodeError(f"decoding failed: {_reason(e)}") from e
        declared = _declared_duration(container, stream)
        if stopped_early:  # the window ended before the video: its length is what the header says
            info.duration = declared or info.duration
        elif declared and info.duration < declared - max(1.0, 0.05 * declared):
            # a file cut short often still opens and decodes its first part
            raise DecodeError(f"truncated: decoded {info.duration:.1f} s of the {declared:.1f} s the header declares")


def _sample(container, stream, fps: Fraction, resize: Resize, info: VideoInfo, start: Fraction, end):
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()  # one for the whole video: per-frame setup is the slow part
    tb = stream.time_base
    origin = prev = prev_t = None
    k, cached = 0, None

    def target():
        return start + k / fps

    def convert(frame):
        rgb = reformatter.reformat(frame, *_decode_size(frame, resize, info), format="rgb24").to_ndarray()
        return np.ascontiguousarray(np.rot90(rgb, info.rotation // 90)) if info.rotation else rgb

    for frame in container.decode(stream):
        if frame.pts is None:
            raise DecodeError("frames without presentation timestamps")
        if origin is None:
            origin = frame.pts
            info.rotation = round((frame.rotation or 0) / 90) % 4 * 90
        t = (frame.pts - origin) * tb
        if prev is not None and t <= prev_t:
            continue  # a repeated or out-of-order timestamp (broken muxer): the earlier frame stands
        while prev is not None and target() < t and (end is None or target() < end):
            if target() >= prev_t:
                cached = cached if cached is not None else convert(prev)
                yield float(prev_t), cached
            k += 1
        if end is not None and target() >= end:
            info.duration = float(t)
            return True
        prev, prev_t, cached = frame, t, None
    if prev is None:
        raise DecodeError("no decodable frames (empty or truncated video)")
    last_end = prev_t + (prev.duration * tb if prev.duration else 1 / Fraction(stream.average_rate or fps))
    info.duration = float(last_end)
    while target() < last_end and (end is None or target() < end):
        cached = cached if cached is not None else convert(prev)
        yield float(prev_t), cached
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


def decode_video(path: Path, fps: float, size=64, start: float = 0.0, end: float | None = None) -> Decoded:
    """Decode into memory (small videos, tests). `size` as in iter_frames."""
    info = VideoInfo()
    frames, times = [], []
    for t, rgb in iter_frames(path, fps, size, info, start, end):
        frames.append(rgb)
        times.append(t)
    if not frames:
        raise DecodeError(f"{path}: no frames in [{start}, {end}) s")
    return Decoded(np.stack(frames), np.asarray(times, np.float64), info.source_fps, info.duration, info.rotation)
