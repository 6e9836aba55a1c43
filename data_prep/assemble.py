"""Pack staged videos into size-capped FFCV shards, deterministically, and describe them in the manifest.

Videos go in a fixed order (split, then id) and each shard is written by ONE FFCV writer process: with several
writer processes FFCV places samples by whichever worker allocates a page first, so the bytes would depend on
timing. Parallelism comes from writing several shards at once instead.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from framework.atomic import write_json
from framework.data import jit_cache
from framework.data.manifest import (
    Manifest,
    ManifestError,
    ShardEntry,
    VideoEntry,
    check_shard,
    sha256,
)
from framework.data.schema import FIELDS, writer_fields

from .align import BACKGROUND
from .identity import identity
from .jobs import STAGING

SPLIT_ORDER = ("train", "val", "test")
PAGE = 4 * (1 << 21)  # FFCV's default page: data is written in whole pages, and the metadata region is padded
METADATA, ALLOCATION = 48, 24  # bytes per sample of FFCV's metadata table (our schema) and allocation table
HEADER = 4096  # header + field descriptors, rounded up


def estimated_size(num_samples: int, payload: int) -> int:
    """Bytes of a shard: the metadata region and the data are each padded to whole pages, the allocation
    table follows. Exact unless a page's tail cannot hold the next frame (then FFCV opens a new page)."""
    def pages(n):
        return -(-n // PAGE) * PAGE

    return pages(HEADER + METADATA * num_samples) + pages(payload) + ALLOCATION * num_samples


@dataclass
class Staged:
    """A staged video and where it goes."""
    id: str
    split: str
    kind: str
    npz: Path
    meta: dict
    entry: VideoEntry | None = None


@dataclass
class ShardPlan:
    name: str
    split: str
    videos: list[Staged] = field(default_factory=list)


def label_space(staged: list[Staged], given: tuple[str, ...] | None) -> list[str]:
    """The given names, else every name used: in first-seen order for per-frame phases (workflow order),
    sorted for clip and segment labels, with the segment background first."""
    kinds = {s.kind for s in staged}
    if given is not None:
        return ([BACKGROUND] if "segments" in kinds and BACKGROUND not in given else []) + list(given)
    names = list(dict.fromkeys(n for s in staged for n in s.meta["vocab"]))
    if kinds & {"clip", "segments"}:
        names = sorted(set(names) - {BACKGROUND})
        if "segments" in kinds:
            names = [BACKGROUND] + names
    return names


def plan_shards(staged: list[Staged], shard_bytes: int | None) -> list[ShardPlan]:
    """Greedy packing in order; a video never straddles two shards (one bigger than the cap gets its own)."""
    order = {s: i for i, s in enumerate(SPLIT_ORDER)}
    staged = sorted(staged, key=lambda s: (order.get(s.split, len(order)), s.split, s.id))
    plans: list[ShardPlan] = []
    samples = payload = 0
    for video in staged:
        more = samples + video.meta["num_frames"], payload + video.meta["bytes"]
        if (not plans or plans[-1].split != video.split
                or (shard_bytes and estimated_size(*more) > shard_bytes)):
            plans.append(ShardPlan("", video.split))
            more = video.meta["num_frames"], video.meta["bytes"]
        plans[-1].videos.append(video)
        samples, payload = more
    for split in dict.fromkeys(p.split for p in plans):
        mine = [p for p in plans if p.split == split]
        for k, p in enumerate(mine):  # a split that fits in one shard keeps the plain name
            p.name = f"{split}.beton" if len(mine) == 1 else f"{split}-{k:05d}.beton"
    return plans


def build_entries(plans: list[ShardPlan], labels: list[str], fps: float) -> list[VideoEntry]:
    index = {name: i for i, name in enumerate(labels)}
    entries = []
    for plan in plans:
        start = 0
        for v in plan.videos:
            m, job = v.meta, v.meta["job"]
            v.entry = VideoEntry(
                id=v.id, split=v.split, shard=plan.name, start=start, num_frames=m["num_frames"], fps=fps,
                source=job["video"], sha256=m["source"]["sha256"], source_fps=m["source_fps"],
                duration=m["duration"], height=m["height"], width=m["width"],
                window=[job["start"], job["end"]] if job["end"] is not None else [],
                clip_label=index[job["label"]] if job["label"] is not None else -1,
                segments=[[s, e, index[lab]] for s, e, lab in m["segments"]],
                tools=(m["tools"] or {}).get("runs", []))
            entries.append(v.entry)
            start += m["num_frames"]
    return entries


class _ShardSamples:
    """The writer's indexable dataset: (staged image, video index, frame, time, label) per sample. The writer
    reads samples in order, so only the current video's staging file is held in memory."""

    def __init__(self, videos: list[Staged], video_index: dict[str, int], labels: list[str]):
        self.videos, self.video_index, self.labels = videos, video_index, labels
        self.index = [(p, k) for p, v in enumerate(videos) for k in range(v.meta["num_frames"])]
        self._loaded = (None, None, None)

    def __len__(self):
        return len(self.index)

    def _arrays(self, p: int):
        if self._loaded[0] != p:
            with np.load(self.videos[p].npz) as z:
                arrays = {k: z[k] for k in z.files}
            lut = np.asarray([self.labels.index(n) for n in self.videos[p].meta["vocab"]] + [-1], np.int64)
            self._loaded = (p, arrays, lut[arrays["labels"]])  # local label ids → global; -1 stays -1
        return self._loaded[1], self._loaded[2]

    def __getitem__(self, i):
        p, k = self.index[i]
        a, labels = self._arrays(p)
        meta = self.videos[p].meta
        image = (meta["height"], meta["width"], a["data"][a["offsets"][k]:a["offsets"][k + 1]])
        return image, self.video_index[self.videos[p].id], k, float(a["times"][k]), int(labels[k])


def _put_staged_image(field, destination, image, malloc):
    """Stands in for RGBImageField.encode: the frame was already encoded (JPEG) or flattened (raw) while
    staging, in the field's own format, so the bytes are copied as they are."""
    from ffcv.fields.rgb_image import IMAGE_MODES

    height, width, payload = image
    destination["mode"] = IMAGE_MODES["raw" if field.write_mode == "raw" else "jpg"]
    destination["height"], destination["width"] = height, width
    destination["data_ptr"], storage = malloc(payload.nbytes)
    storage[:] = payload


@contextlib.contextmanager
def _quiet_ffcv_writer():
    """FFCV's writer draws its own progress bar per shard; ours covers the whole run."""
    import ffcv.writer
    from tqdm import tqdm

    saved = ffcv.writer.tqdm
    ffcv.writer.tqdm = partial(tqdm, disable=True)
    try:
        yield
    finally:
        ffcv.writer.tqdm = saved


def write_shard(root: Path, plan: ShardPlan, video_index: dict[str, int], labels: list[str],
                jpeg_quality: int, raw: bool) -> ShardEntry:
    from ffcv.writer import DatasetWriter

    fields = writer_fields(jpeg_quality, raw)
    # an instance attribute, not a subclass: FFCV records a field's type by its exact class. It reaches the
    # writer process by fork (Linux default), which keeps instance attributes.
    fields["image"].encode = partial(_put_staged_image, fields["image"])
    samples = _ShardSamples(plan.videos, video_index, labels)
    path, tmp = Path(root) / plan.name, Path(root) / (plan.name + ".partial")
    with _quiet_ffcv_writer():
        DatasetWriter(str(tmp), dict(zip(FIELDS, fields.values())), num_workers=1).from_indexed_dataset(
            samples, chunksize=256)
    tmp.replace(path)  # a shard appears whole or not at all
    return ShardEntry(name=plan.name, split=plan.split, num_samples=len(samples), size=path.stat().st_size,
                      sha256=sha256(path))


def shard_key(plan: ShardPlan, video_index: dict[str, int], labels: list[str], jpeg_quality: int, raw: bool) -> str:
    videos = [[video_index[v.id], v.id, v.meta["npz_sha256"]] for v in plan.videos]
    blob = json.dumps([plan.name, plan.split, labels, jpeg_quality, raw, videos])
    return hashlib.sha256(blob.encode()).hexdigest()


def _kept(root: Path, previous: ShardEntry | None, key: str, recorded: dict) -> bool:
    """The previous run's shard is what this run would write: same inputs (key), and the file is the one
    the manifest describes (size and header, then the sha256, taken from the record while the file's size
    and mtime are those recorded: see identity.py)."""
    if previous is None or previous.key != key:
        return False
    try:
        path = check_shard(root, previous)
    except ManifestError:
        return False
    return identity(path, recorded.get(previous.name, {}))["sha256"] == previous.sha256


def write_all(root: Path, plans: list[ShardPlan], labels: list[str], jpeg_quality: int, raw: bool,
              workers: int, previous: dict[str, ShardEntry]) -> list[ShardEntry]:
    """Write every planned shard, except those the previous run already wrote from the same inputs."""
    video_index = {v.id: i for i, v in enumerate(v for p in plans for v in p.videos)}
    keys = [shard_key(p, video_index, labels, jpeg_quality, raw) for p in plans]
    recorded = _recorded_shards(root)
    kept = {p.name: previous[p.name] for p, k in zip(plans, keys) if _kept(root, previous.get(p.name), k, recorded)}
    todo = [(p, k) for p, k in zip(plans, keys) if p.name not in kept]
    job = partial(_write_keyed, root, video_index=video_index, labels=labels, jpeg_quality=jpeg_quality, raw=raw)
    if todo:
        jit_cache.enable()  # before the first ffcv import: the import compiles (or loads) numba code
    if workers <= 1 or len(todo) <= 1:
        written = [job(item) for item in todo]
    else:
        import ffcv.writer  # noqa: F401  imported once here, inherited by the forked workers (the import is slow)

        with ProcessPoolExecutor(min(workers, len(todo))) as pool:
            written = list(pool.map(job, todo))
    kept.update({e.name: e for e in written})
    shards = [kept[p.name] for p in plans]
    _record_shards(root, shards)
    return shards


SHARD_RECORD = "shards.json"  # under .vt-prep: size, mtime and sha256 of each shard this run left


def _recorded_shards(root: Path) -> dict:
    try:
        return json.loads((Path(root) / STAGING / SHARD_RECORD).read_text())
    except (OSError, ValueError):
        return {}


def _record_shards(root: Path, shards: list[ShardEntry]) -> None:
    record = {}
    for s in shards:
        st = (Path(root) / s.name).stat()
        record[s.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": s.sha256}
    (Path(root) / STAGING).mkdir(parents=True, exist_ok=True)
    write_json(Path(root) / STAGING / SHARD_RECORD, record, indent=1)


def _write_keyed(root, item, **kwargs) -> ShardEntry:
    plan, key = item
    entry = write_shard(root, plan, **kwargs)
    entry.key = key
    return entry


def make_manifest(labels: list[str], plans: list[ShardPlan], shards: list[ShardEntry], prep: dict) -> Manifest:
    tools = next((v.meta["tools"]["names"] for p in plans for v in p.videos if v.meta["tools"]), [])
    return Manifest(labels=labels, videos=[v.entry for p in plans for v in p.videos], shards=shards, tools=tools,
                    prep=prep)
