"""Programmatic entry to shard writing for (video, per-frame phase file) pairs; the full pipeline is prepare.py."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from framework.data.manifest import Manifest, check_relative

from .align import sampled_labels  # noqa: F401  (re-exported: part of this module's API)
from .annotations import AnnotationError
from .decode import Resize
from .jobs import Job
from .stage import StageSpec


@dataclass(frozen=True)
class VideoItem:
    id: str
    video: str  # relative to the data root
    annotation: str  # relative to the data root
    split: str
    tools: str | None = None  # tool presence file, relative to the data root


@dataclass(frozen=True)
class ShardSpec:
    fps: float = 5.0
    size: int | tuple[int, int] = 64  # int: size × size; (width, height)
    short_side: int | None = None  # instead of size: scale the short side to this, keep the aspect ratio
    jpeg_quality: int = 90
    raw: bool = False
    workers: int = 1  # processes, for decoding and for writing shards
    decode_threads: int | None = None  # decoder threads per worker; None: cores // workers (see prepare.py)
    shard_bytes: int | None = None  # cap per shard (a split gets several shards); None: one shard per split
    ann_fps: float | None = None  # rate of annotation rows; None: the video's frame rate
    tolerance: float = 1.0  # seconds by which labels and video length may differ
    labels: tuple[str, ...] | None = None

    def __post_init__(self):
        checks = {"fps must be > 0": self.fps > 0, "jpeg_quality must be in 1..100": 1 <= self.jpeg_quality <= 100,
                  "workers must be >= 1": self.workers >= 1, "tolerance must be >= 0": self.tolerance >= 0,
                  "decode threads must be >= 1": self.decode_threads is None or self.decode_threads >= 1,
                  "shard size must be > 0": self.shard_bytes is None or self.shard_bytes > 0,
                  "ann_fps must be > 0": self.ann_fps is None or self.ann_fps > 0}
        bad = [msg for msg, ok in checks.items() if not ok]
        if bad:
            raise ValueError("; ".join(bad))

    def stage_spec(self) -> StageSpec:
        size = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
        resize = Resize(short_side=self.short_side) if self.short_side else Resize(size=size)
        return StageSpec(fps=self.fps, resize=resize, jpeg_quality=self.jpeg_quality, raw=self.raw,
                         ann_fps=self.ann_fps, tolerance=self.tolerance,
                         labels=tuple(self.labels) if self.labels is not None else None)


def write_shards(root: Path, items: list[VideoItem], spec: ShardSpec = ShardSpec(),
                 labels: list[str] | None = None, progress: bool = True) -> Manifest:
    """Shards + manifest for known-good inputs: any skipped input is an error here (the CLI reports instead)."""
    from .prepare import prepare

    for item in items:
        check_relative(item.video)
        check_relative(item.annotation)
        if item.tools:
            check_relative(item.tools)
    if labels is not None:
        spec = ShardSpec(**{**spec.__dict__, "labels": tuple(labels)})
    jobs = [Job(it.id, it.video, it.split, kind="phases", phases=it.annotation, tools=it.tools) for it in items]
    result = prepare(root, jobs, spec.stage_spec(), spec.workers, spec.shard_bytes, progress=progress,
                     threads=spec.decode_threads)
    if result.problems:
        p = result.problems[0]
        raise AnnotationError(f"{p.file}: {p.reason} ({len(result.problems)} input(s) failed, see prep_report.json)")
    return result.manifest
