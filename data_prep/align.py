"""Align annotations with the sampled frames, and refuse annotations that do not fit the video.

Every sampled frame carries its presentation time t (seconds from the first frame). A table row written for
source frame i at `ann_fps` describes time i / ann_fps; a sampled frame takes the row *nearest* in time, so
25 fps phase rows sampled at 1 fps pick rows 0, 25, 50, ... and 1 fps tool rows sampled at 5 fps are held
for ±0.5 s around their frame.
"""
from __future__ import annotations

import numpy as np

from .annotations import AnnotationError, FrameTable

BACKGROUND = "background"  # label of frames outside every temporal segment


def nearest_rows(row_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    right = np.clip(np.searchsorted(row_times, times), 1, max(len(row_times) - 1, 1))
    left = right - 1
    if len(row_times) == 1:
        return np.zeros(len(times), np.int64)
    return np.where(times - row_times[left] <= row_times[right] - times, left, right)


def check_coverage(row_times: np.ndarray, duration: float, tolerance: float, path) -> None:
    """Labels must cover the video and not run past it: a different length means a different video
    (or a different frame rate) than the one the labels were made for."""
    period = float(np.median(np.diff(row_times))) if len(row_times) > 1 else 0.0
    if duration > row_times[-1] + period + tolerance:
        raise AnnotationError(f"{path}: labels end at {row_times[-1] + period:.2f} s but the video runs to "
                              f"{duration:.2f} s (wrong file, or wrong --ann-fps?)")
    if row_times[-1] > duration + tolerance:
        raise AnnotationError(f"{path}: labels run to {row_times[-1]:.2f} s but the video ends at {duration:.2f} s "
                              "(wrong file, or wrong --ann-fps?)")


def table_rows(table: FrameTable, times: np.ndarray, duration: float, ann_fps: float, tolerance: float,
               path) -> np.ndarray:
    """Index of the table row of each sampled frame."""
    row_times = table.frames / ann_fps
    check_coverage(row_times, duration, tolerance, path)
    return nearest_rows(row_times, times)


def sampled_labels(phases: list[str], times: np.ndarray, ann_fps: float, path) -> list[str]:
    """Label of each sampled frame for a contiguous per-frame phase list at ann_fps (no length check)."""
    rows = nearest_rows(np.arange(len(phases)) / ann_fps, np.asarray(times))
    return [phases[r] for r in rows]


def segment_labels(segments, times: np.ndarray, duration: float, tolerance: float, path) -> list[str]:
    """Frames inside a segment take its label (the first listed, where segments overlap), others BACKGROUND."""
    labels = [BACKGROUND] * len(times)
    for start, end, label in reversed(segments):  # reversed: the first listed segment is applied last and wins
        if not start < end:
            raise AnnotationError(f"{path}: segment [{start}, {end}] of {label!r} is empty")
        if end > duration + tolerance:
            raise AnnotationError(f"{path}: segment [{start}, {end}] of {label!r} ends after the video "
                                  f"({duration:.2f} s)")
        for i in np.flatnonzero((times >= start) & (times < end)):
            labels[i] = label
    return labels


def check_window(start: float, end: float, duration: float, tolerance: float, path) -> None:
    if end > duration + tolerance:
        raise AnnotationError(f"{path}: clip [{start}, {end}] s ends after the video ({duration:.2f} s)")


def run_lengths(values: np.ndarray) -> list[list[int]]:
    """[[start, end, value], ...] with end exclusive: compact per-frame targets for the manifest."""
    if not len(values):
        return []
    cuts = np.flatnonzero(np.diff(values)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(values)]
    return [[int(s), int(e), int(values[s])] for s, e in zip(starts, ends)]
