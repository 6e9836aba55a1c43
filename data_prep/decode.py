"""Decode a video with PyAV at a target frame rate and size."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DecodeError(RuntimeError):
    pass


@dataclass
class Decoded:
    frames: np.ndarray  # [N, H, W, 3] uint8
    times: np.ndarray  # [N] presentation time of each kept frame, seconds
    source_fps: float  # the stream's average frame rate


def decode_video(path: Path, fps: float, size: int) -> Decoded:
    """Keep the first frame at or after each target time k / fps (by presentation timestamp, so a variable
    frame rate is sampled correctly), resized to size × size RGB."""
    import av
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()  # one reformatter for the whole video: per-frame setup is the slow part
    frames, times = [], []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DecodeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            source_fps = float(stream.average_rate or fps)
            half_period = 0.5 / source_fps
            next_time = 0.0
            for frame in container.decode(stream):
                t = float(frame.time)
                if t + half_period < next_time:
                    continue
                rgb = reformatter.reformat(frame, width=size, height=size, format="rgb24")
                frames.append(rgb.to_ndarray())
                times.append(t)
                while next_time <= t + half_period:
                    next_time += 1.0 / fps
    except av.FFmpegError as e:
        raise DecodeError(f"{path}: {e}") from e
    if not frames:
        raise DecodeError(f"{path}: no decodable frames")
    return Decoded(np.stack(frames), np.asarray(times, np.float64), source_fps)
