"""Annotation files, one reader per format (examples of each in docs/DATA.md).

- per-frame tables, Cholec80 style: a `Frame<TAB>...` header, then rows `index<TAB>value...` with strictly
  increasing frame indices (phases: every frame at 25 fps; tools: every 25th frame);
- clip labels CSV, Kinetics style: `label,youtube_id,time_start,time_end,split`;
- temporal segments JSON, ActivityNet/THUMOS style: `{"database": {id: {"subset", "annotations": [{"segment":
  [start, end], "label"}]}}}`.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = "Frame\tPhase"
# ActivityNet names its subsets; the manifest uses short split names
SUBSETS = {"training": "train", "validation": "val", "testing": "test", "validate": "val"}


class AnnotationError(ValueError):
    pass


@dataclass(frozen=True)
class FrameTable:
    """Rows of a per-frame annotation file: frame indices (in source frames) and one value column per name."""
    frames: np.ndarray  # [R] int, strictly increasing
    columns: tuple[str, ...]  # names after "Frame"
    values: list[tuple[str, ...]]  # [R] one string per column


def read_frame_table(path: Path) -> FrameTable:
    lines = [ln.rstrip("\r") for ln in Path(path).read_text().splitlines() if ln.strip()]
    header = lines[0].split("\t") if lines else []
    if len(header) < 2 or header[0] != "Frame":
        raise AnnotationError(f"{path}: first line must be a header 'Frame<TAB>name...', got {lines[:1]}")
    frames, values = [], []
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != len(header) or not parts[0].isdigit():
            raise AnnotationError(f"{path}:{lineno}: expected {len(header)} tab-separated fields "
                                  f"starting with a frame index, got {line!r}")
        if frames and int(parts[0]) <= frames[-1]:
            raise AnnotationError(f"{path}:{lineno}: frame {parts[0]} is not after frame {frames[-1]}")
        frames.append(int(parts[0]))
        values.append(tuple(parts[1:]))
    if not frames:
        raise AnnotationError(f"{path}: no annotation rows")
    return FrameTable(np.asarray(frames, np.int64), tuple(header[1:]), values)


def write_phase_file(path: Path, phases: list[str], step: int = 1) -> None:
    rows = [HEADER] + [f"{i * step}\t{p}" for i, p in enumerate(phases)]
    Path(path).write_text("\n".join(rows) + "\n")


def read_phase_file(path: Path) -> list[str]:
    """Return the phase of every annotated frame, in order. Rows must be 0, 1, 2, ... without gaps."""
    table = read_frame_table(path)
    if len(table.columns) != 1:
        raise AnnotationError(f"{path}: a phase file has two columns, {HEADER!r}")
    if not np.array_equal(table.frames, np.arange(len(table.frames))):
        raise AnnotationError(f"{path}: frames must be 0, 1, 2, ... without gaps")
    return [v[0] for v in table.values]


def write_tool_file(path: Path, tools: list[str], rows: list[tuple[int, ...]], step: int = 25) -> None:
    lines = ["\t".join(["Frame", *tools])] + ["\t".join(map(str, [i * step, *r])) for i, r in enumerate(rows)]
    Path(path).write_text("\n".join(lines) + "\n")


def tool_masks(table: FrameTable, path) -> np.ndarray:
    """Tool presence rows as bit masks (bit i = tool i present)."""
    try:
        bits = np.asarray([[int(v) for v in row] for row in table.values], np.int64)
    except ValueError:
        raise AnnotationError(f"{path}: tool presence values must be 0 or 1") from None
    if ((bits != 0) & (bits != 1)).any():
        raise AnnotationError(f"{path}: tool presence values must be 0 or 1")
    return bits @ (1 << np.arange(bits.shape[1], dtype=np.int64))


@dataclass(frozen=True)
class Clip:
    label: str | None  # None: an unlabeled test list (Kinetics test CSVs have no label column)
    youtube_id: str
    start: float
    end: float
    split: str

    @property
    def id(self) -> str:  # the Kinetics downloader's file stem for a trimmed clip
        return f"{self.youtube_id}_{int(self.start):06d}_{int(self.end):06d}"


def read_clip_csv(path: Path) -> list[Clip]:
    need = {"youtube_id", "time_start", "time_end", "split"}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = need - set(reader.fieldnames or [])
        if missing:
            raise AnnotationError(f"{path}: missing columns {sorted(missing)} (need {sorted(need)})")
        clips = []
        for lineno, row in enumerate(reader, start=2):
            try:
                clip = Clip(row.get("label") or None, row["youtube_id"], float(row["time_start"]), float(row["time_end"]),
                            SUBSETS.get(row["split"], row["split"]))
            except (TypeError, ValueError):
                raise AnnotationError(f"{path}:{lineno}: bad row {row}") from None
            if not 0 <= clip.start < clip.end:
                raise AnnotationError(f"{path}:{lineno}: time_start must be < time_end, got {row}")
            clips.append(clip)
    return clips


@dataclass(frozen=True)
class Segments:
    split: str
    segments: tuple[tuple[float, float, str], ...]  # (start, end, label), seconds
    labelled: bool = True  # False for a test subset without annotations (ActivityNet's hidden test labels)


def read_segments_json(path: Path) -> dict[str, Segments]:
    try:
        raw = json.loads(Path(path).read_text())
        database = raw.get("database", raw)
        out = {}
        for vid, entry in database.items():
            segs = tuple((float(a["segment"][0]), float(a["segment"][1]), str(a["label"]))
                         for a in entry.get("annotations", []))
            split = SUBSETS.get(entry.get("subset", "train"), entry.get("subset", "train"))
            out[vid] = Segments(split, segs, labelled=bool(segs) or split != "test")
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise AnnotationError(f"{path}: not an ActivityNet-style segments file ({type(e).__name__}: {e})") from e
    return out
