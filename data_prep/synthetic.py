"""Synthetic surgical-workflow videos that need temporal context to label.

Every video runs through the phases of PHASES in order, each for a random duration. The two idle phases
are drawn from the same frame distribution: a frame (or a short clip) of idle_early cannot be told from one
of idle_late. Only whether dissection has already happened tells them apart, and idle phases last longer
than a training chunk, so a model needs a hidden state carried across chunks to label them.
A frame-only model tops out near 1 - (idle frames) / 2 (see README for the measured ceiling).

With `tools=True` two instruments appear in bursts and are drawn while present (a square in a corner each):
`grasper` in preparation and closure, `clipper` in dissection; one Cholec80-style tool file per video.

`generate_anticipation` makes the data of the BN "cheating" experiment: frames of pure noise and one instrument
that appears at unpredictable times (gaps drawn at random), drawn as a bright block while present. Nothing in the
frames before an appearance tells when it comes, so an online model cannot beat the prior — unless its
normalisation mixes the statistics of later frames into earlier ones (trainable BatchNorm on a chunk of
consecutive frames).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .annotations import write_phase_file, write_tool_file

PHASES = ("preparation", "idle_early", "dissection", "idle_late", "closure")
# background colour of each phase; the idle phases share theirs on purpose
_TINT = {
    "preparation": (170, 80, 70),
    "idle_early": (110, 110, 110),
    "dissection": (70, 160, 80),
    "idle_late": (110, 110, 110),
    "closure": (70, 90, 170),
}
TOOLS = ("grasper", "clipper")
_TOOL_PHASES = {"grasper": ("preparation", "closure"), "clipper": ("dissection",)}
_TOOL_COLOUR = {"grasper": (0, 255, 255), "clipper": (255, 0, 255)}


@dataclass(frozen=True)
class SyntheticSpec:
    num_videos: int = 24
    test_videos: int = 6
    fps: float = 10.0
    size: int = 64  # frames are size × size; must be even for H.264 4:2:0
    phase_seconds: tuple[float, float] = (8.0, 20.0)  # each phase's duration is uniform in this range
    seed: int = 0
    tools: bool = False  # also draw instruments and write tool presence files

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


def tool_timeline(phases: list[str], fps: float, rng: np.random.Generator) -> np.ndarray:
    """[frames, len(TOOLS)] bool: each tool in bursts of 1–3 s with 1–3 s gaps, only during its phases."""
    present = np.zeros((len(phases), len(TOOLS)), bool)
    for k, tool in enumerate(TOOLS):
        f = 0
        while f < len(phases):
            on, off = (max(1, round(rng.uniform(1.0, 3.0) * fps)) for _ in range(2))
            present[f:f + on, k] = True
            f += on + off
        present[:, k] &= np.isin(phases, _TOOL_PHASES[tool])
    return present


def draw_tools(img: np.ndarray, present) -> np.ndarray:
    """A filled square per present tool: grasper top-left, clipper bottom-right."""
    q = max(2, img.shape[0] // 5)
    for k, tool in enumerate(TOOLS):
        if present[k]:
            rows = slice(0, q) if k == 0 else slice(-q, None)
            img[rows, rows] = _TOOL_COLOUR[tool]
    return img


def render_frame(phase: str, t: float, video_rng_params: dict, rng: np.random.Generator, size: int,
                 tools=None) -> np.ndarray:
    """One RGB frame. Phase identity is in the colour and in the moving object; per-video jitter and
    per-frame noise keep it from being a lookup table. tools: which of TOOLS are present (drawn)."""
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
    if tools is not None:
        draw_tools(img, tools)
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode_video(path: Path, frames, fps: float, size: int) -> None:
    import av
    from fractions import Fraction

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        # no macroblock-tree rate control: with it, x264 now and then encoded the same frames to different
        # bytes when other processes kept the cores busy (two runs of tests/analysis_directions.py at one seed
        # trained on different videos), and "same spec and seed → same videos" is promised
        # (tests/test_synthetic.py). One x264 thread, one lookahead thread, explicit timestamps or converting
        # to YUV before the encoder did not make it deterministic.
        stream.options = {"crf": "18", "preset": "veryfast", "x264-params": "mbtree=0"}
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
        # a stream of its own: with tools off the videos are exactly those of before tools existed
        tools = tool_timeline(phases, spec.fps, np.random.default_rng([spec.seed, i, 1])) if spec.tools else None
        frames = (render_frame(p, k / spec.fps, params, rng, spec.size, None if tools is None else tools[k])
                  for k, p in enumerate(phases))
        encode_video(out / "videos" / f"{vid}.mp4", frames, spec.fps, spec.size)
        write_phase_file(out / "annotations" / f"{vid}.txt", phases)
        split = "test" if i >= spec.num_videos - spec.test_videos else "train"
        record = {"id": vid, "video": f"videos/{vid}.mp4", "annotation": f"annotations/{vid}.txt",
                  "split": split, "num_frames": len(phases)}
        if tools is not None:
            record["tools"] = _write_tools(out, vid, tools, TOOLS)
        records.append(record)
    return records


def _write_tools(out: Path, vid: str, present: np.ndarray, names) -> str:
    """One row per source frame (frame index step 1, at the video's rate): Cholec80's layout."""
    (out / "tools").mkdir(parents=True, exist_ok=True)
    write_tool_file(out / "tools" / f"{vid}.txt", list(names), [tuple(map(int, r)) for r in present], step=1)
    return f"tools/{vid}.txt"


@dataclass(frozen=True)
class AnticipationSpec:
    num_videos: int = 16
    test_videos: int = 4
    fps: float = 2.0
    size: int = 32
    seconds: tuple[float, float] = (90.0, 150.0)  # video length, uniform
    gap_seconds: tuple[float, float] = (4.0, 30.0)  # time between two uses of the instrument, uniform
    use_seconds: tuple[float, float] = (2.0, 5.0)  # how long each use lasts
    seed: int = 0


def instrument_timeline(spec: AnticipationSpec, rng: np.random.Generator) -> np.ndarray:
    """[frames] bool: uses at gaps drawn independently of everything before them."""
    n = max(1, round(rng.uniform(*spec.seconds) * spec.fps))
    present, f = np.zeros(n, bool), round(rng.uniform(*spec.gap_seconds) * spec.fps)
    while f < n:
        on = max(1, round(rng.uniform(*spec.use_seconds) * spec.fps))
        present[f:f + on] = True
        f += on + max(1, round(rng.uniform(*spec.gap_seconds) * spec.fps))
    return present


def noise_frame(rng: np.random.Generator, size: int, present: bool) -> np.ndarray:
    img = rng.integers(40, 216, size=(size, size, 3)).astype(np.uint8)
    if present:  # the instrument: a bright block over half the frame
        img[size // 4: 3 * size // 4, :] = 250
    return img


def generate_anticipation(out: Path, spec: AnticipationSpec = AnticipationSpec(), progress: bool = True) -> list[dict]:
    """Noise videos with one instrument (`instrument`) used at unpredictable times; one phase label (`surgery`)
    per frame so the shards have a label space; tool presence files as for Cholec80."""
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    records = []
    for i in tqdm(range(spec.num_videos), desc="synthetic videos", disable=not progress):
        rng = np.random.default_rng([spec.seed, i, 2])
        vid = f"video{i:03d}"
        present = instrument_timeline(spec, rng)
        encode_video(out / "videos" / f"{vid}.mp4", (noise_frame(rng, spec.size, p) for p in present), spec.fps,
                     spec.size)
        write_phase_file(out / "annotations" / f"{vid}.txt", ["surgery"] * len(present))
        split = "test" if i >= spec.num_videos - spec.test_videos else "train"
        records.append({"id": vid, "video": f"videos/{vid}.mp4", "annotation": f"annotations/{vid}.txt",
                        "tools": _write_tools(out, vid, present[:, None], ["instrument"]), "split": split,
                        "num_frames": len(present)})
    return records


# -- action clips with a known answer: what a class is made of (appearance only, or motion only) ---------------
ACTION_CLASSES = {"motion": ("rightward", "leftward"), "appearance": ("stripes", "checkers")}


@dataclass(frozen=True)
class ActionSpec:
    """Short clips of one action each (Kinetics-style clips CSV).
    kind="motion": a blob crosses a random static texture, rightward or leftward; the two classes show the
    *same set of frames*, in opposite orders, so no single frame (nor any order-free pooling of frames) tells
    them apart. kind="appearance": the background is stripes or checkers; the blob's motion is random and says
    nothing about the class, so one frame is enough."""
    kind: str = "motion"
    num_clips: int = 40
    test_clips: int = 10
    frames: int = 16
    fps: float = 8.0
    size: int = 32
    seed: int = 0

    def __post_init__(self):
        if self.kind not in ACTION_CLASSES:
            raise ValueError(f"kind={self.kind!r}: choose one of {list(ACTION_CLASSES)}")
        if not 0 < self.test_clips < self.num_clips or self.frames < 2 or self.size % 2:
            raise ValueError("need 0 < test_clips < num_clips, frames >= 2 and an even size")


def _background(kind: str, label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    colour = rng.uniform(60, 200, size=3)
    if kind == "appearance":
        period = rng.integers(4, 8)
        on = (xx // period) % 2 == 0 if label == 0 else ((xx // period) + (yy // period)) % 2 == 0
    else:  # a random texture, the same law for both classes
        on = rng.random((size, size)) < 0.5
    img = np.where(on[..., None], colour, 255 - colour)
    return img.astype(np.float32)


def action_frames(spec: ActionSpec, label: int, rng: np.random.Generator) -> list[np.ndarray]:
    base = _background(spec.kind, label, rng, spec.size)
    positions = np.linspace(0.15, 0.85, spec.frames)
    backwards = label == 1 if spec.kind == "motion" else rng.random() < 0.5  # appearance: direction at random
    if backwards:
        positions = positions[::-1]
    cy, r = rng.uniform(0.3, 0.7), 0.12
    yy, xx = np.mgrid[0:spec.size, 0:spec.size].astype(np.float32) / spec.size
    out = []
    for cx in positions:
        img = base.copy()
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = (250, 240, 40)
        out.append(np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8))
    return out


def generate_actions(out: Path, spec: ActionSpec = ActionSpec(), progress: bool = True) -> Path:
    """Write `videos/<id>_000000_<end>.mp4` (the Kinetics downloader's names for trimmed clips) and
    `clips.csv` (label,youtube_id,time_start,time_end,split); returns the CSV's path. Balanced classes."""
    import csv

    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    names = ACTION_CLASSES[spec.kind]
    end = int(math.ceil(spec.frames / spec.fps))
    rows = []
    for i in tqdm(range(spec.num_clips), desc=f"synthetic {spec.kind} clips", disable=not progress):
        rng = np.random.default_rng([spec.seed, i, 3])
        label = i % len(names)
        yid = f"{spec.kind}{i:04d}"
        encode_video(out / "videos" / f"{yid}_000000_{end:06d}.mp4", action_frames(spec, label, rng), spec.fps,
                     spec.size)
        split = "test" if i >= spec.num_clips - spec.test_clips else "train"
        rows.append({"label": names[label], "youtube_id": yid, "time_start": 0, "time_end": end, "split": split})
    with open(out / "clips.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out / "clips.csv"


# -- temporal action localization: actions as segments inside long videos ------------------------------------
TAL_ACTIONS = ("sweep", "bounce", "flash", "grow")
# each action is a pattern of its own: what moves, how, and its colour
_ACTION_COLOUR = {"sweep": (250, 230, 40), "bounce": (250, 70, 200), "flash": (40, 240, 250), "grow": (90, 250, 90)}


@dataclass(frozen=True)
class TALSpec:
    """Long videos of background with actions in them, annotated as ActivityNet segments JSON.
    Background: a video's own tinted texture with noise and a grey blob drifting at random (never an action).
    Actions: `sweep` (a yellow disc crossing left to right), `bounce` (a magenta bar going up and down),
    `flash` (a cyan square blinking), `grow` (a green disc swelling from nothing), each lasting a random time,
    separated by background of random length; they never overlap."""
    num_videos: int = 24
    test_videos: int = 6
    classes: int = 3  # the first `classes` of TAL_ACTIONS
    fps: float = 8.0
    size: int = 32
    video_seconds: tuple[float, float] = (40.0, 80.0)
    action_seconds: tuple[float, float] = (2.0, 8.0)
    gap_seconds: tuple[float, float] = (2.0, 10.0)
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.classes <= len(TAL_ACTIONS):
            raise ValueError(f"classes must be 1..{len(TAL_ACTIONS)}, got {self.classes}")
        if self.size % 2 or self.size < 16 or not 0 <= self.test_videos < self.num_videos:
            raise ValueError("need an even size >= 16 and 0 <= test_videos < num_videos")
        for name in ("video_seconds", "action_seconds", "gap_seconds"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be 0 < lo <= hi, got {(lo, hi)}")


def tal_timeline(spec: TALSpec, rng: np.random.Generator) -> tuple[int, list[tuple[int, int, str]]]:
    """(frames, [(first frame, end frame exclusive, action)]): background first, then action, gap, action, …"""
    n = max(1, round(rng.uniform(*spec.video_seconds) * spec.fps))
    actions, f = [], round(rng.uniform(*spec.gap_seconds) * spec.fps)
    names = TAL_ACTIONS[:spec.classes]
    while True:
        length = max(2, round(rng.uniform(*spec.action_seconds) * spec.fps))
        if f + length > n:
            return n, actions
        actions.append((f, f + length, names[int(rng.integers(len(names)))]))
        f += length + max(1, round(rng.uniform(*spec.gap_seconds) * spec.fps))


def render_tal_frame(action: str | None, progress: float, k: int, base: np.ndarray, drift: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """One frame: the video's background, the drifting blob, and the action's pattern at `progress` (0..1)."""
    size = base.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = base.copy()
    img[(xx - drift[0]) ** 2 + (yy - drift[1]) ** 2 < 0.006] = (150, 150, 150)
    colour = _ACTION_COLOUR.get(action)
    if action == "sweep":
        img[(xx - (0.1 + 0.8 * progress)) ** 2 + (yy - 0.5) ** 2 < 0.02] = colour
    elif action == "bounce":
        img[np.abs(yy - (0.5 + 0.35 * math.sin(4 * math.pi * progress))) < 0.08] = colour
    elif action == "flash":
        if k % 4 < 2:
            img[(np.abs(xx - 0.5) < 0.22) & (np.abs(yy - 0.5) < 0.22)] = colour
    elif action == "grow":
        img[(xx - 0.5) ** 2 + (yy - 0.5) ** 2 < (0.05 + 0.35 * progress) ** 2] = colour
    img += rng.normal(0, 5, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _tal_frames(spec: TALSpec, n: int, actions, rng: np.random.Generator):
    size = spec.size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    tint = rng.uniform(50, 120, size=3).astype(np.float32)
    base = tint + 15 * np.sin(2 * math.pi * (rng.uniform(0.5, 2) * xx + rng.uniform(0.5, 2) * yy))[..., None]
    current = {f: (a, (f - s) / max(1, e - s - 1)) for s, e, a in actions for f in range(s, e)}
    drift = rng.uniform(0.2, 0.8, size=2)
    for k in range(n):
        drift = np.clip(drift + rng.normal(0, 0.02, size=2), 0.1, 0.9)
        action, progress = current.get(k, (None, 0.0))
        yield render_tal_frame(action, progress, k, base, drift, rng)


def generate_tal(out: Path, spec: TALSpec = TALSpec(), progress: bool = True) -> Path:
    """Write `videos/<id>.mp4` and `segments.json` (ActivityNet style: subsets `training` and `validation`,
    segments in seconds at the frames' times); returns the JSON's path. Same spec → same files."""
    import json

    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    database = {}
    for i in tqdm(range(spec.num_videos), desc="synthetic TAL videos", disable=not progress):
        rng = np.random.default_rng([spec.seed, i, 4])
        vid = f"video{i:03d}"
        n, actions = tal_timeline(spec, rng)
        encode_video(out / "videos" / f"{vid}.mp4", _tal_frames(spec, n, actions, rng), spec.fps, spec.size)
        subset = "validation" if i >= spec.num_videos - spec.test_videos else "training"
        database[vid] = {"subset": subset, "duration": n / spec.fps,
                         "annotations": [{"segment": [s / spec.fps, e / spec.fps], "label": a} for s, e, a in actions]}
    path = out / "segments.json"
    path.write_text(json.dumps({"version": "synthetic", "taxonomy": list(TAL_ACTIONS[:spec.classes]),
                                "database": database}, indent=1))
    return path
