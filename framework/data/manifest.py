"""Manifest: the JSON file beside the shards that describes videos, shards and the label space."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from ..atomic import write_json

MANIFEST_NAME = "manifest.json"
VERSION = 1


class ManifestError(ValueError):
    pass


@dataclass
class VideoEntry:
    id: str
    split: str
    shard: str  # shard file name, relative to the data root
    start: int  # first sample index of this video inside its shard
    num_frames: int
    fps: float
    source: str  # source video, relative to the data root
    # optional (added after version 1; old manifests load with these defaults)
    sha256: str = ""  # of the source video
    source_fps: float = 0.0
    duration: float = 0.0  # seconds of the source video
    height: int = 0  # stored frame size
    width: int = 0
    window: list[float] = field(default_factory=list)  # [start, end] seconds sampled from the source, if a clip
    clip_label: int = -1  # clip-level label (Kinetics style), index into Manifest.labels
    segments: list[list] = field(default_factory=list)  # [[start_s, end_s, label index], ...] (TAL style)
    tools: list[list[int]] = field(default_factory=list)  # tool presence runs [[first, end, bitmask], ...]


@dataclass
class ShardEntry:
    name: str
    split: str
    num_samples: int
    size: int
    sha256: str
    key: str = ""  # fingerprint of what went in (videos, labels, settings): a rerun keeps a shard whose key matches


@dataclass
class Manifest:
    labels: list[str]
    videos: list[VideoEntry] = field(default_factory=list)
    shards: list[ShardEntry] = field(default_factory=list)
    version: int = VERSION
    tools: list[str] = field(default_factory=list)  # names of the tool presence bits, bit i = tools[i]
    prep: dict = field(default_factory=dict)  # the settings the shards were made with

    def tool_targets(self, video: VideoEntry):
        """[num_frames, len(tools)] bool: which tools are present in each sampled frame."""
        import numpy as np

        masks = np.zeros(video.num_frames, np.int64)
        for first, end, mask in video.tools:
            masks[first:end] = mask
        return (masks[:, None] >> np.arange(len(self.tools))) & 1 == 1

    def split(self, name: str) -> list[VideoEntry]:
        videos = [v for v in self.videos if v.split == name]
        if not videos:
            known = sorted({v.split for v in self.videos})
            raise ManifestError(f"split {name!r} has no videos (splits in the manifest: {known})")
        return videos

    def shard(self, name: str) -> ShardEntry:
        for s in self.shards:
            if s.name == name:
                return s
        raise ManifestError(f"shard {name!r} is not listed in the manifest")

    def save(self, root: Path) -> Path:
        return write_json(Path(root) / MANIFEST_NAME, asdict(self), indent=1)

    @classmethod
    def load(cls, root: Path) -> "Manifest":
        path = Path(root) / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(f"no {MANIFEST_NAME} in {root} (build shards with `vt-prep shards`)")
        raw = json.loads(path.read_text())
        if raw.get("version") != VERSION:
            raise ManifestError(f"{path}: manifest version {raw.get('version')} is not {VERSION}")
        m = cls(labels=raw["labels"], videos=[VideoEntry(**v) for v in raw["videos"]],
                shards=[ShardEntry(**s) for s in raw["shards"]], tools=raw.get("tools", []),
                prep=raw.get("prep", {}))
        for name in [v.shard for v in m.videos] + [v.source for v in m.videos] + [s.name for s in m.shards]:
            check_relative(name)
        return m


def check_relative(name: str) -> None:
    """Paths in a manifest are relative to the data root and may not escape it."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise ManifestError(f"manifest path {name!r} must be relative to the data root, without '..'")


def sha256(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


FFCV_VERSION = 2  # ffcv.types.CURRENT_VERSION of the .beton format we write


def _ffcv_header_types():
    """ffcv.types.HeaderType and FieldDescType, spelled out: importing ffcv costs seconds (numba), too much
    for checking a header. tests/test_prep_pipeline.py checks they equal FFCV's own."""
    import numpy as np

    header = np.dtype([("version", "<u2"), ("num_fields", "<u2"), ("page_size", "<u4"), ("num_samples", "<u8"),
                       ("alloc_table_ptr", "<u8")], align=True)
    field = np.dtype([("type_id", "<u1"), ("name", ("<u1", 16)), ("arguments", ("<u1", (1024,)))], align=True)
    return header, field


def read_shard_header(path: Path) -> tuple[dict, list[str]]:
    """The FFCV header of a .beton (version, num_fields, page_size, num_samples, alloc_table_ptr) and its
    field names, read without opening the whole file."""
    import numpy as np

    header_type, field_type = _ffcv_header_types()
    with open(path, "rb") as f:
        head = f.read(header_type.itemsize)
        if len(head) < header_type.itemsize:
            return {}, []
        header = np.frombuffer(head, header_type)[0]
        raw = f.read(field_type.itemsize * int(header["num_fields"]))
        descs = np.frombuffer(raw[:len(raw) - len(raw) % field_type.itemsize], field_type)
    names = [bytes(d["name"]).rstrip(b"\0").decode("ascii", "replace") for d in descs]
    return {k: int(header[k]) for k in header_type.names}, names


def check_header(path: Path, entry: ShardEntry) -> None:
    from .schema import FIELDS

    header, names = read_shard_header(path)
    if header.get("version") != FFCV_VERSION or tuple(names) != FIELDS:
        raise ManifestError(f"shard {entry.name} does not have the header of a videotrain FFCV shard "
                            f"(version {header.get('version')}, fields {names}; expected version "
                            f"{FFCV_VERSION}, fields {list(FIELDS)}): it is corrupt or not ours")
    if header["num_samples"] != entry.num_samples:
        raise ManifestError(f"shard {entry.name} holds {header['num_samples']} samples, the manifest says "
                            f"{entry.num_samples}: shard and manifest come from different runs; rebuild with "
                            "`vt-prep`")


def check_shard(root: Path, entry: ShardEntry, full: bool = False) -> Path:
    """Refuse a shard whose size or header (or, with full=True, checksum) differs from the manifest."""
    path = Path(root) / entry.name
    if not path.is_file():
        raise ManifestError(f"shard {entry.name} is missing from {root}")
    if path.stat().st_size != entry.size:
        raise ManifestError(f"shard {entry.name} has {path.stat().st_size} bytes, the manifest says "
                            f"{entry.size}: it is truncated or was rewritten; rebuild it with `vt-prep shards`")
    check_header(path, entry)
    if full and sha256(path) != entry.sha256:
        raise ManifestError(f"shard {entry.name} fails its sha256 check: it is corrupt")
    return path
