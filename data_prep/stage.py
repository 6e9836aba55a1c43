"""Per-video work, run in a worker process: decode, encode, align labels, validate, write a staging file.

Each video lands in `<root>/.vt-prep/staging/<id>.npz` (encoded frames + per-frame labels) and then a `.json`
done-marker holding the fingerprint of everything that went into it and the npz checksum. The marker is
written last, atomically, so a killed run leaves either a complete, checkable video or nothing; a rerun reuses
every video whose marker still matches.

A rerun hashes only what changed: the marker records size, mtime and sha256 of the source video, the annotation
files and the npz (identity.py says what is trusted).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from framework.atomic import write_atomic

from .align import BACKGROUND, check_window, run_lengths, segment_labels, table_rows
from .annotations import AnnotationError, read_frame_table, tool_masks
from .decode import DecodeError, Resize, VideoInfo, iter_frames
from .identity import identity
from .jobs import STAGING, Job
from .progress import VideoProgress, expected_frames
from .report import Problem

STAGE_VERSION = 1  # bump when the staging format or the sampling rule changes: old staging is redone


@dataclass(frozen=True)
class StageSpec:
    fps: float = 5.0
    resize: Resize = Resize(size=(64, 64))  # noqa: RUF009  frozen: safe to share
    jpeg_quality: int = 90
    raw: bool = False
    ann_fps: float | None = None  # rate of frame-indexed annotation rows; None: the video's own frame rate
    tolerance: float = 1.0  # seconds by which labels may be shorter/longer than the video
    labels: tuple[str, ...] | None = None  # the allowed label names; None: whatever the annotations use


@dataclass
class Outcome:
    job: Job
    problem: Problem | None = None
    meta: dict | None = None  # the done-marker
    reused: bool = False


def staging_paths(root: Path, job: Job) -> tuple[Path, Path]:
    stem = Path(root) / STAGING / "staging" / job.id.replace("/", "__")
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def stage(root: Path, job: Job, spec: StageSpec, threads: int = 1) -> Outcome:
    """`threads`: decoder threads (they do not change the output)."""
    root = Path(root)
    npz, marker = staging_paths(root, job)
    try:
        previous = _read_marker(marker)
        source = identity(root / job.video, previous.get("source", {}))
        annotations = {p: identity(root / p, previous.get("annotations", {}).get(p, {}))
                       for p in (job.phases, job.tools) if p and (root / p).is_file()}
        fingerprint = _fingerprint(job, spec, source["sha256"], annotations)
        staged = _staged(npz, previous) if previous.get("fingerprint") == fingerprint else None
        if staged:
            return Outcome(job, meta=_remember(marker, previous, source=source, annotations=annotations, npz=staged),
                           reused=True)
        arrays, meta = _build(root, job, spec, threads)
    except DecodeError as e:
        return Outcome(job, Problem(job.video, str(e), "decode"))
    except (AnnotationError, OSError, UnicodeDecodeError) as e:
        return Outcome(job, Problem(job.video, str(e), "annotations"))
    except Exception as e:  # noqa: BLE001  FFmpeg/numpy on exotic input: one video's failure, not the run's
        return Outcome(job, Problem(job.video, f"unexpected {type(e).__name__}: {e}", "decode"))
    npz.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(npz, lambda f: np.savez(f, **arrays))
    staged = identity(npz, {})
    meta.update(fingerprint=fingerprint, source=source, annotations=annotations, npz=staged,
                npz_sha256=staged["sha256"], job=asdict(job))
    _write_marker(marker, meta)
    return Outcome(job, meta=json.loads(json.dumps(meta)))  # the same shape a reused marker has


def _staged(npz: Path, previous: dict) -> dict | None:
    """The npz's identity if it is the file the marker describes (by size and mtime as recorded, else by
    its sha256), None if it is not."""
    if not npz.is_file():
        return None
    now = identity(npz, previous.get("npz", {}))
    return now if now["sha256"] == previous.get("npz_sha256") else None


def _remember(marker: Path, previous: dict, **identities) -> dict:
    """A reused marker records the inputs' current sizes and mtimes (an input touched without a change, or
    a marker from an older version without them), so that the next rerun need not hash them again."""
    current = {**previous, **identities}
    if current != previous:
        _write_marker(marker, current)
    return current


def _write_marker(marker: Path, meta: dict) -> None:
    text = json.dumps(meta, indent=1)
    write_atomic(marker, lambda f: f.write(text.encode()))


def _build(root: Path, job: Job, spec: StageSpec, threads: int = 1) -> tuple[dict, dict]:
    info, progress = VideoInfo(), VideoProgress()
    payloads, times = [], []
    try:
        for t, rgb in iter_frames(root / job.video, spec.fps, spec.resize, info, job.start, job.end, threads):
            if not payloads:
                progress.start(expected_frames(info.declared or info.duration, spec.fps, job.start, job.end))
            payloads.append(encode_frame(rgb, spec.raw, spec.jpeg_quality))
            times.append(t)
            progress.frame()
            shape = rgb.shape
    finally:
        progress.finish()
    if not payloads:
        raise DecodeError(f"no frames in [{job.start}, {job.end}) s")
    times = np.asarray(times, np.float64)
    names, tools = _labels(root, job, spec, times, info)
    # first seen: workflow order; segment labels count even where no sampled frame falls inside the segment
    vocab = list(dict.fromkeys([n for n in names if n is not None] + [s[2] for s in job.segments]))
    unknown = [n for n in vocab if n not in spec.labels and n != BACKGROUND] if spec.labels is not None else []
    if unknown:
        raise AnnotationError(f"unknown label names {unknown} (allowed: {list(spec.labels)})")
    arrays = {"data": np.concatenate(payloads), "offsets": np.cumsum([0] + [len(p) for p in payloads]),
              "times": times, "labels": np.asarray([-1 if n is None else vocab.index(n) for n in names], np.int64)}
    meta = {"vocab": vocab, "num_frames": len(payloads), "bytes": int(arrays["data"].nbytes),
            "height": shape[0], "width": shape[1],
            "source_fps": info.source_fps, "duration": info.duration, "rotation": info.rotation,
            "tools": tools, "segments": [list(s) for s in job.segments]}
    return arrays, meta


def _labels(root: Path, job: Job, spec: StageSpec, times: np.ndarray, info: VideoInfo):
    """Label name of every sampled frame (None: unlabeled) and tool presence (column names + run lengths)."""
    ann_fps = spec.ann_fps or info.source_fps
    if job.kind == "phases":
        table = read_frame_table(root / job.phases)
        rows = table_rows(table, times, info.duration, ann_fps, spec.tolerance, job.phases)
        names = [table.values[r][0] for r in rows]
    elif job.kind == "clip":
        if job.end is not None:
            check_window(job.start, job.end, info.duration, spec.tolerance, job.video)
        names = [job.label] * len(times)  # None (unlabeled test list) → -1
    elif job.kind == "segments":
        names = segment_labels(job.segments, times, info.duration, spec.tolerance, job.video)
    else:
        names = [None] * len(times)
    tools = None
    if job.tools:
        table = read_frame_table(root / job.tools)
        rows = table_rows(table, times, info.duration, ann_fps, spec.tolerance, job.tools)
        tools = {"names": list(table.columns), "runs": run_lengths(tool_masks(table, job.tools)[rows])}
    return names, tools


def encode_frame(rgb: np.ndarray, raw: bool, quality: int) -> np.ndarray:
    if raw:
        return rgb.reshape(-1)
    # the same OpenCV calls as FFCV's encode_jpeg (a test checks the bytes are identical), without importing
    # ffcv in every worker: that import (numba) costs seconds per process
    import cv2

    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise DecodeError("JPEG encoding failed")
    return jpeg.reshape(-1)


def _fingerprint(job: Job, spec: StageSpec, source_sha: str, annotations: dict) -> str:
    hashes = {p: ident["sha256"] for p, ident in annotations.items()}
    blob = json.dumps([STAGE_VERSION, asdict(job), asdict(spec), source_sha, hashes], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_marker(marker: Path) -> dict:
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}
