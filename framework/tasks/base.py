"""The contract every task implements, and the pieces tasks share.

A task owns what a run learns and how it is scored: the per-frame targets it builds from the manifest (and the
shards' label field), the size of its block of the head's output, its loss, the sums it logs during training,
its evaluation report, and the files and plots that go with it. The trainer, the relay and the evaluator only
talk to a `TaskSet` (framework/tasks/__init__.py), which runs one or several tasks on one shared model.

Shapes: a head gives outputs [B, T, C] (multi-stage heads [B, T, S, C]: the time axis stays at 1, so chunks
still concatenate along it); each task sees its own C-slice. Targets mark what must not count (padding past a
video's end, unlabeled frames) with −1 (class targets) or NaN (real-valued targets); losses are *sums* over the
frames that count, and the TaskSet divides by the frames of the whole sequence-parallel group (see relay.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.manifest import Manifest, VideoEntry


class TaskError(ValueError):
    """A task cannot run on this data or with this config; the message is one line for the user."""


def as_stages(outputs: torch.Tensor) -> torch.Tensor:
    """[B, T, C] → [B, T, 1, C]; multi-stage outputs [B, T, S, C] stay."""
    return outputs if outputs.ndim == 4 else outputs.unsqueeze(2)


def final_stage(outputs: torch.Tensor) -> torch.Tensor:
    """What a multi-stage head predicts: its last stage."""
    return outputs[:, :, -1] if outputs.ndim == 4 else outputs


@dataclass
class TaskContext:
    root: Path
    manifest: Manifest
    train_videos: list[VideoEntry]  # loss weights and the like come from the training split
    model: object = None  # the run's ModelConfig: what a task must know of the head's output layout


@dataclass
class VideoResult:
    """One video after streaming inference: per-frame fields and the (final-stage) outputs of one task."""
    video: VideoEntry
    frame: np.ndarray  # [N]
    time: np.ndarray  # [N] seconds
    label: np.ndarray  # [N] the shards' label field (−1 unlabeled)
    outputs: np.ndarray  # [N, C] float32

    def slice(self, sl: slice) -> "VideoResult":
        return VideoResult(self.video, self.frame, self.time, self.label, self.outputs[:, sl])


@dataclass
class TaskOutput:
    """What evaluation gives: the report (nested, every number labelled with its convention) and the
    per-frame table columns."""
    report: dict
    columns: dict[str, np.ndarray] = field(default_factory=dict)


class Task:
    name: str = ""
    window: tuple[str, ...] = ()  # names of the sums `window_stats` returns, in order
    # how evaluation reads a split: stream (whole videos, online) | views (clips) | videos (whole videos, the
    # head once over each: for heads that see the whole sequence)
    sampling: str = "stream"
    per_frame: bool = True  # targets [B, T, ...] per frame (False: per sequence, e.g. a clip's label)

    def __init__(self, cfg, ctx: TaskContext):
        self.cfg, self.ctx = cfg, ctx

    @property
    def weight(self) -> float:
        return float(self.cfg.weight)

    out_dim: int = 0

    # -- training ----------------------------------------------------------------------------
    def targets(self, batch, videos: list[VideoEntry]) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, stages: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Sum over the frames that count of the per-frame loss, averaged over the stages [B, T, S, C]."""
        raise NotImplementedError

    def window_stats(self, final: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Sums (one per name in `window`) added up over a logging window and over ranks."""
        raise NotImplementedError

    def window_metrics(self, totals: dict[str, float]) -> dict[str, float]:
        raise NotImplementedError

    # -- evaluation --------------------------------------------------------------------------
    def has_labels(self, results: list[VideoResult]) -> bool:
        raise NotImplementedError

    def evaluate(self, results: list[VideoResult]) -> dict:
        """The report over whole videos (results[i].outputs holds this task's block)."""
        raise NotImplementedError

    def columns(self, result: VideoResult) -> dict[str, np.ndarray]:
        """Per-frame columns of the predictions table: targets, predictions, probabilities, regressions."""
        raise NotImplementedError

    def headline(self, report: dict) -> str:
        """The one line a run prints for this task."""
        raise NotImplementedError

    def write_files(self, results: list[VideoResult], report: dict, out_dir: Path) -> list[Path]:
        """Plots and exports (e.g. Cholec80-format files); returns the files written."""
        return []


def per_frame_targets(batch, videos: list[VideoEntry], table: Callable[[VideoEntry], np.ndarray], fill,
                      dtype) -> torch.Tensor:
    """[B, T, ...] targets gathered from a per-video, per-frame table (frames indexed by batch.frame);
    padding lanes and frames past a video's end get `fill`."""
    B, T = batch.frame.shape
    out = None
    for b in range(B):
        v = int(batch.video[b])
        if v < 0:
            continue
        rows = table(videos[v])[batch.frame[b].numpy()]
        if out is None:
            out = np.full((B, T, *rows.shape[1:]), fill, dtype)
        out[b] = rows
    if out is None:  # an all-padding batch: the shape comes from any video's table
        rows = table(videos[0])
        out = np.full((B, T, *rows.shape[1:]), fill, dtype)
    out[~batch.valid.numpy()] = fill
    return torch.from_numpy(out)


class VideoCache:
    """A task's per-video tables, computed once per video."""

    def __init__(self, build: Callable[[VideoEntry], np.ndarray]):
        self.build, self.tables = build, {}

    def __call__(self, video: VideoEntry) -> np.ndarray:
        if video.id not in self.tables:
            self.tables[video.id] = self.build(video)
        return self.tables[video.id]
