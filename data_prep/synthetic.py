"""Synthetic surgical-workflow videos that need temporal context to label.

Every video runs through the phases of PHASES in order, each for a random duration. The two idle phases
are drawn from the same frame distribution: a frame (or a short clip) of idle_early cannot be told from one
of idle_late. Only whether dissection has already happened tells them apart, and idle phases last longer
than a training chunk, so a model needs a hidden state carried across chunks to label them.
A frame-only model tops out near 1 - (idle frames) / 2 (see README for the measured ceiling).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .annotations import write_phase_file

PHASES = ("preparation", "idle_early", "dissection", "idle_late", "closure")
# background colour of each phase; the idle phases share theirs on purpose
_TINT = {
    "preparation": (170, 80, 70),
    "idle_early": (110, 110, 110),
    "dissection": (70, 160, 80),
    "idle_late": (110, 110, 110),
    "closure": (70, 90, 170),
}


@dataclass(frozen=True)
class SyntheticSpec:
    num_videos: int = 24
    test_videos: int = 6
    fps: float = 10.0
    size: int = 64  # frames are size × size; must be even for H.264 4:2:0
    phase_seconds: tuple[float, float] = (8.0, 20.0)  # each phase's duration is uniform in this range
    seed: int = 0

    def __post_init__(self):
        if self.size % 2 or self.size < 16:
            raise ValueError(f"size must be even and >= 16, got {self.size}")
        if not 0 <= self.test_videos < self.num_videos:
            raise ValueError("test_videos must be in [0, num_videos)")
        lo, hi = self.phase_seconds
        if not 0 < lo <= hi:
            raise ValueError(f"phase_seconds must be 0 < lo <= hi, got {self.phase_seconds}")


def phase_timeline(spec: SyntheticSpec, rng: np.random.Generator) -> list[str]:
    """One phase name per frame."""
    frames = []
    for phase in PHASES:
        n = max(1, round(rng.uniform(*spec.phase_seconds) * spec.fps))
        frames += [phase] * n
    return frames


def render_frame(phase: str, t: float, video_rng_params: dict, rng: np.random.Generator, size: int) -> np.ndarray:
    """One RGB frame. Phase identity is in the colour and in the moving object; per-video jitter and
    per-frame noise keep it from being a lookup table."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    tint = np.array(_TINT[phase], np.float32) * video_rng_params["brightness"]
    img = np.broadcast_to(tint, (size, size, 3)).copy()
    shade = 20 * np.sin(2 * math.pi * (xx * video_rng_params["freq"] + yy))
    img += shade[..., None]
    if phase == "preparation":  # a disc sweeping left to right
        cx, cy = (0.2 + 0.6 * ((t * 0.3) % 1.0)), 0.5
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < 0.02] = (240, 220, 60)
    elif phase == "dissection":  # diagonal stripes sliding
        img[(np.sin(2 * math.pi * (4 * (xx + yy) - t)) > 0.6)] = (230, 230, 230)
    elif phase == "closure":  # a bar moving up and down
        cy = 0.5 + 0.3 * math.sin(t)
        img[np.abs(yy - cy) < 0.06] = (250, 120, 200)
    else:  # idle: a blob at a random place, same law in both idle phases
        cx, cy = rng.uniform(0.2, 0.8, size=2)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < 0.01] = (200, 200, 200)
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode_video(path: Path, frames, fps: float, size: int) -> None:
    import av
    from fractions import Fraction

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def generate(out: Path, spec: SyntheticSpec = SyntheticSpec(), progress: bool = True) -> list[dict]:
    """Write `videos/<id>.mp4` and `annotations/<id>.txt` under `out`; return one record per video.
    Same spec and seed → same videos."""
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    records = []
    for i in tqdm(range(spec.num_videos), desc="synthetic videos", disable=not progress):
        rng = np.random.default_rng([spec.seed, i])
        vid = f"video{i:03d}"
        phases = phase_timeline(spec, rng)
        params = {"brightness": rng.uniform(0.8, 1.2), "freq": rng.uniform(0.5, 2.0)}
        frames = (render_frame(p, k / spec.fps, params, rng, spec.size) for k, p in enumerate(phases))
        encode_video(out / "videos" / f"{vid}.mp4", frames, spec.fps, spec.size)
        write_phase_file(out / "annotations" / f"{vid}.txt", phases)
        split = "test" if i >= spec.num_videos - spec.test_videos else "train"
        records.append({"id": vid, "video": f"videos/{vid}.mp4", "annotation": f"annotations/{vid}.txt",
                        "split": split, "num_frames": len(phases)})
    return records
