"""Progress of a preparation run across its worker processes: sampled frames, frames/s and an ETA.

Workers count into shared memory while they decode, so the bar moves inside a long video instead of jumping
when one ends. Its total is an estimate: each video's expected frames from its header once it starts (exact
once it ends), and the mean of those for the videos not started yet; tqdm turns frames and total into
frames/s and an ETA.
"""
from __future__ import annotations

import multiprocessing
import sys
from fractions import Fraction

from tqdm import tqdm

_INDEX = {"frames": 0, "expected": 1, "started": 2, "finished": 3}  # the counters, in shared memory
_shared = None  # this process's counters (set in the parent, and in each worker by its initializer)


def install(shared) -> None:
    global _shared
    _shared = shared


def counters():
    return multiprocessing.Array("d", len(_INDEX))


def _add(**values) -> None:
    if _shared is None:
        return
    with _shared.get_lock():
        for name, value in values.items():
            _shared[_INDEX[name]] += value


def expected_frames(declared: float, fps: float, start: float, end: float | None) -> float:
    stop = declared if end is None else min(end, declared)
    return max(1.0, float((Fraction(stop) - Fraction(start)) * Fraction(fps)))


class VideoProgress:
    """One video's reports, from the worker decoding it."""

    def __init__(self):
        self.expected = self.frames = 0.0

    def start(self, expected: float) -> None:
        self.expected = expected
        _add(expected=expected, started=1)

    def frame(self) -> None:
        self.frames += 1
        _add(frames=1)

    def finish(self) -> None:
        """The expected count becomes the real one (also for a video that failed half way)."""
        if self.expected:
            _add(expected=self.frames - self.expected, finished=1)


class Bar:
    """The parent's bar over sampled frames; `refresh(outcomes)` after each finished video or poll."""

    def __init__(self, jobs: int, enabled: bool):
        self.jobs = jobs
        self.shared = counters()
        install(self.shared)  # in-process staging (one worker) reports here directly
        self.bar = tqdm(total=0, desc="frames", unit="frame", disable=not enabled, dynamic_ncols=True,
                        mininterval=0.5 if sys.stderr.isatty() else 30)  # a log file gets a line every 30 s

    def decoding(self) -> bool:
        """Some worker has begun to decode a video (not everything is reused)."""
        return self.shared[_INDEX["started"]] > 0

    def refresh(self, done: int, reused: int, skipped: int) -> None:
        with self.shared.get_lock():
            frames, expected, started, finished = self.shared[:]
        in_progress = started - finished
        unstarted = max(0.0, self.jobs - done - in_progress)
        mean = expected / started if started else 0.0
        self.bar.total = max(round(expected + unstarted * mean), int(frames))
        self.bar.set_postfix(videos=f"{done}/{self.jobs}", reused=reused, skipped=skipped, refresh=False)
        self.bar.update(int(frames) - self.bar.n)

    def close(self) -> None:
        self.bar.close()
        install(None)
