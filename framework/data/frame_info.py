"""Per-frame fields of the shards (frame index, time, label) read from FFCV's metadata table, without decoding
a single image: class frequencies for loss weights, ground truth for reports."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .manifest import Manifest, VideoEntry
from .schema import FIELDS


@dataclass(frozen=True)
class FrameInfo:
    frame: np.ndarray  # [N] frame index within the video
    time: np.ndarray  # [N] seconds
    label: np.ndarray  # [N] index into Manifest.labels, −1 unlabeled


def _column(name: str) -> str:
    return f"f{FIELDS.index(name)}"  # FFCV names metadata columns by field position


def frame_info(root: Path, manifest: Manifest, videos: list[VideoEntry]) -> dict[str, FrameInfo]:
    from ffcv.reader import Reader

    readers: dict[str, np.ndarray] = {}
    out = {}
    for v in videos:
        if v.shard not in readers:
            readers[v.shard] = Reader(str(Path(root) / v.shard)).metadata
        rows = readers[v.shard][v.start:v.start + v.num_frames]
        out[v.id] = FrameInfo(rows[_column("frame")].astype(np.int64), rows[_column("time")].astype(np.float64),
                              rows[_column("label")].astype(np.int64))
    return out
