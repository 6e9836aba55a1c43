"""Find the videos under a data root and pair each with its annotation: one Job per video (or per clip).

A file that cannot be paired is not an error for the run: it becomes a Problem in the report.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from framework.data.manifest import check_relative

from .annotations import AnnotationError, read_clip_csv, read_segments_json
from .report import Problem

STAGING = ".vt-prep"  # under the data root; never scanned for videos


@dataclass(frozen=True)
class Job:
    id: str
    video: str  # relative to the data root
    split: str
    kind: str = "unlabeled"  # phases | clip | segments | unlabeled
    phases: str | None = None  # per-frame label table, relative to the data root
    tools: str | None = None  # per-frame tool presence table, relative to the data root
    label: str | None = None  # clip label
    start: float = 0.0  # time window in the source video, seconds
    end: float | None = None
    segments: tuple = ()  # ((start, end, label), ...)


@dataclass(frozen=True)
class Layout:
    """Where the annotations are. At most one of phases / clips / segments; none means unlabeled."""
    videos: str = "videos"
    phases: str | None = None  # pattern with {id}, e.g. "phase_annotations/{id}-phase.txt"
    tools: str | None = None  # pattern with {id}, e.g. "tool_annotations/{id}-tool.txt"
    clips: str | None = None  # Kinetics-style CSV
    segments: str | None = None  # ActivityNet-style JSON
    splits: dict = field(default_factory=dict)  # id -> split, for phases / unlabeled (default "train")

    def __post_init__(self):
        if sum(x is not None for x in (self.phases, self.clips, self.segments)) > 1:
            raise ValueError("give at most one of --phases, --clips, --segments")
        for path in (self.videos, self.phases, self.tools, self.clips, self.segments):
            if path is not None:
                check_relative(path)  # the manifest names sources relative to the root: inputs live under it


def find_videos(root: Path, folder: str) -> tuple[dict[str, str], list[Problem]]:
    """id (path under the folder, without suffix) -> path relative to root. Every file counts: a non-video
    file in the video folder is reported, not silently ignored."""
    base = root / folder
    if not base.is_dir():
        raise FileNotFoundError(f"no video folder {base}")
    videos, problems = {}, []
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        vid = path.relative_to(base).with_suffix("").as_posix()
        if vid in videos:
            problems.append(Problem(rel.as_posix(), f"duplicate video id {vid!r} (also {videos[vid]})", "discover"))
            continue
        videos[vid] = rel.as_posix()
    return videos, problems


def discover(root: Path, layout: Layout) -> tuple[list[Job], list[Problem]]:
    root = Path(root)
    videos, problems = find_videos(root, layout.videos)
    if layout.clips:
        jobs, more = _clip_jobs(root, layout, videos)
    elif layout.segments:
        jobs, more = _segment_jobs(root, layout, videos)
    else:
        jobs, more = _per_video_jobs(root, layout, videos)
    jobs, more_tools = _attach_tools(root, layout, jobs)
    jobs, repeated = _unique(jobs)
    return jobs, problems + more + more_tools + repeated


def _unique(jobs: list[Job]) -> tuple[list[Job], list[Problem]]:
    """One job per id (a clip listed twice would otherwise be staged twice into the same file)."""
    seen, kept, problems = set(), [], []
    for job in sorted(jobs, key=lambda j: j.id):
        if job.id in seen:
            problems.append(Problem(job.video, f"{job.id} is annotated twice; the first entry is used", "discover"))
        else:
            seen.add(job.id)
            kept.append(job)
    return kept, problems


def _per_video_jobs(root, layout, videos):
    jobs, problems = [], []
    for vid, rel in videos.items():
        split = layout.splits.get(vid, "train")
        if layout.phases is None:
            jobs.append(Job(vid, rel, split))
            continue
        ann = layout.phases.format(id=vid)
        if not (root / ann).is_file():
            problems.append(Problem(rel, f"no annotation file {ann}", "discover"))
            continue
        jobs.append(Job(vid, rel, split, kind="phases", phases=ann))
    return jobs, problems


def _attach_tools(root, layout, jobs):
    if layout.tools is None:
        return jobs, []
    kept, problems = [], []
    for job in jobs:
        ann = layout.tools.format(id=job.id)
        if (root / ann).is_file():
            kept.append(replace(job, tools=ann))
        else:
            problems.append(Problem(job.video, f"no tool annotation file {ann}", "discover"))
    return kept, problems


def _clip_jobs(root, layout, videos):
    """A clip's video is either the trimmed clip `<youtube_id>_<start>_<end>` (Kinetics downloader) or the full
    video `<youtube_id>`, from which the [start, end) window is sampled. A CSV without labels (a test list)
    gives unlabeled clips."""
    clips = read_clip_csv(root / layout.clips)
    jobs, problems, used = [], [], set()
    for clip in clips:
        if clip.id in videos:
            jobs.append(Job(clip.id, videos[clip.id], clip.split, kind="clip", label=clip.label))
            used.add(clip.id)
        elif clip.youtube_id in videos:
            jobs.append(Job(clip.id, videos[clip.youtube_id], clip.split, kind="clip", label=clip.label,
                            start=clip.start, end=clip.end))
            used.add(clip.youtube_id)
        else:
            problems.append(Problem(layout.clips, f"no video for clip {clip.id} (looked for {clip.id}.* and "
                                                  f"{clip.youtube_id}.* in {layout.videos}/)", "discover"))
    return jobs, problems + _unannotated(videos, used, layout.clips)


def _segment_jobs(root, layout, videos):
    """ActivityNet files are named `v_<id>.mp4` while the JSON says `<id>`: accept both."""
    database = read_segments_json(root / layout.segments)
    jobs, problems, used = [], [], set()
    for vid, entry in database.items():
        name = vid if vid in videos else f"v_{vid}" if f"v_{vid}" in videos else None
        if name is None:
            problems.append(Problem(layout.segments, f"no video for {vid!r} in {layout.videos}/", "discover"))
            continue
        kind = "segments" if entry.labelled else "unlabeled"
        jobs.append(Job(name, videos[name], entry.split, kind=kind, segments=entry.segments))
        used.add(name)
    return jobs, problems + _unannotated(videos, used, layout.segments)


def _unannotated(videos, used, source):
    return [Problem(rel, f"not listed in {source}", "discover") for vid, rel in videos.items() if vid not in used]


def read_splits(path: Path) -> dict[str, str]:
    """`id,split` lines."""
    splits = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2:
            raise AnnotationError(f"{path}:{lineno}: expected 'id,split', got {line!r}")
        splits[parts[0]] = parts[1]
    return splits
