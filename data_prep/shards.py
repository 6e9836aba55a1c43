"""Write FFCV frame shards + manifest from (video, annotation) pairs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from framework.data.manifest import Manifest, ShardEntry, VideoEntry, check_relative, sha256
from framework.data.schema import FIELDS, writer_fields

from .annotations import AnnotationError, read_phase_file
from .decode import decode_video


@dataclass(frozen=True)
class VideoItem:
    id: str
    video: str  # relative to the data root
    annotation: str  # relative to the data root
    split: str


@dataclass(frozen=True)
class ShardSpec:
    fps: float = 5.0
    size: int = 64
    jpeg_quality: int = 90
    raw: bool = False
    workers: int = 1


def sampled_labels(phases: list[str], times: np.ndarray, ann_fps: float, path) -> list[str]:
    """Label of each sampled frame: the annotation row at its presentation time (rows are at ann_fps)."""
    rows = np.rint(times * ann_fps).astype(int)
    if rows[-1] >= len(phases) + 1:  # one row of slack for rounding at the very end
        raise AnnotationError(f"{path}: {len(phases)} annotation rows but the video runs to row {rows[-1]}")
    return [phases[min(r, len(phases) - 1)] for r in rows]


def write_shards(root: Path, items: list[VideoItem], spec: ShardSpec = ShardSpec(),
                 labels: list[str] | None = None, progress: bool = True) -> Manifest:
    """Decode every item, then write one `<split>.beton` per split under root and the manifest beside it."""
    root = Path(root)
    decoded = {}
    for item in tqdm(items, desc="decode", disable=not progress):
        check_relative(item.video)
        d = decode_video(root / item.video, spec.fps, spec.size)
        decoded[item.id] = (d, sampled_labels(read_phase_file(root / item.annotation), d.times, d.source_fps,
                                              item.annotation))
    if labels is None:  # first-seen order, which for workflow datasets is the phase order
        labels = list(dict.fromkeys(lab for _, labs in decoded.values() for lab in labs))
    label_index = {name: i for i, name in enumerate(labels)}
    manifest = Manifest(labels=labels)
    for split in dict.fromkeys(item.split for item in items):
        split_items = [it for it in items if it.split == split]
        manifest.shards.append(_write_split(root, split, split_items, decoded, label_index, manifest, spec))
    manifest.save(root)
    return manifest


def _write_split(root, split, items, decoded, label_index, manifest, spec) -> ShardEntry:
    from ffcv.writer import DatasetWriter

    name = f"{split}.beton"
    samples = []
    for item in items:
        d, labs = decoded[item.id]
        unknown = set(labs) - set(label_index)
        if unknown:
            raise AnnotationError(f"{item.annotation}: unknown labels {sorted(unknown)}")
        vidx = len(manifest.videos)
        manifest.videos.append(VideoEntry(id=item.id, split=split, shard=name, start=len(samples),
                                          num_frames=len(d.frames), fps=spec.fps, source=item.video))
        samples += [(d.frames[k], vidx, k, float(d.times[k]), label_index[labs[k]]) for k in range(len(d.frames))]
    path = root / name
    writer = DatasetWriter(str(path), dict(zip(FIELDS, writer_fields(spec.jpeg_quality, spec.raw).values())),
                           num_workers=spec.workers)
    writer.from_indexed_dataset(samples, chunksize=256)
    return ShardEntry(name=name, split=split, num_samples=len(samples), size=path.stat().st_size,
                      sha256=sha256(path))


def items_from_folder(root: Path, test_ids: set[str] = frozenset()) -> list[VideoItem]:
    """Pair `videos/<id>.mp4` with `annotations/<id>.txt` under root."""
    root = Path(root)
    items = []
    for video in sorted((root / "videos").glob("*.mp4")):
        ann = root / "annotations" / f"{video.stem}.txt"
        if not ann.is_file():
            raise AnnotationError(f"{video}: no annotation file {ann.relative_to(root)}")
        items.append(VideoItem(video.stem, str(video.relative_to(root)), str(ann.relative_to(root)),
                               "test" if video.stem in test_ids else "train"))
    if not items:
        raise FileNotFoundError(f"no videos/*.mp4 under {root}")
    return items
