"""`vt-prep`: videos + annotations → FFCV frame shards + manifest (see docs/DATA.md).

  vt-prep prepare --root DIR [--phases 'annotations/{id}.txt' | --clips clips.csv | --segments segs.json]
                  [--tools 'tool_annotations/{id}-tool.txt'] [--fps 1 --size 224 | --short-side 256]
                  [--workers 8 --decode-threads 1 --shard-size 4G]   any videos under DIR/videos, any annotation
  vt-prep shards --root DIR [--test video038,video039] [--fps 5 --size 64]   = prepare --phases 'annotations/{id}.txt'
  vt-prep synthetic --out data/demo [--videos 24 --test-videos 6 --seed 0 --tools ...]   videos + annotations + shards
  vt-prep synthetic --kind tal --out data/tal [--classes 3 --video-seconds 40 80]   TAL videos + segments.json + shards
  vt-prep verify --root DIR                                                      check shards against the manifest

exit codes: 0 ok; 1 verify found a corrupt or missing shard; 2 bad command line, bad input spec or nothing
usable; 3 partial: shards were written but some inputs were skipped (listed in DIR/prep_report.json).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from framework.entry import entry_point

from .report import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL


def _size(text: str):
    """'224' (square) or '320x240' (width x height)."""
    m = re.fullmatch(r"(\d+)(?:x(\d+))?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size must be N or WxH, got {text!r}")
    return int(m[1]) if m[2] is None else (int(m[1]), int(m[2]))


def _bytes(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)i?B?", text.strip(), re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"size must look like 500M or 4G, got {text!r}")
    return int(float(m[1]) * 1024 ** " KMGT".index((m[2] or " ").upper()))


def _shard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fps", type=float, default=5.0, help="sampling rate of the shards (frames per second)")
    p.add_argument("--size", type=_size, default=64, help="frames are resized to N×N or W×H (e.g. 320x240)")
    p.add_argument("--short-side", type=int, help="instead of --size: scale the short side to this, keep aspect")
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--raw", action="store_true", help="store raw pixels instead of JPEG")
    p.add_argument("--workers", type=int, default=1, help="processes for decoding and for writing shards")
    p.add_argument("--decode-threads", type=int,
                   help="decoder threads per worker (default: cores // workers, so workers × threads <= cores)")
    p.add_argument("--shard-size", type=_bytes, help="cap per shard file, e.g. 4G (a split gets several shards)")
    p.add_argument("--ann-fps", type=float, help="rate of frame-indexed annotation rows (default: the video's)")
    p.add_argument("--tolerance", type=float, default=1.0,
                   help="seconds by which labels may be shorter or longer than the video")
    p.add_argument("--labels", help="file with the allowed label names, one per line (its order = label ids); "
                                    "other inputs are skipped as mislabelled")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _in_root(root: Path, name: str) -> Path:
    """Annotation paths on the command line are relative to the data root (like the manifest's)."""
    return Path(name) if Path(name).is_absolute() else Path(root) / name


def _spec(a, root: Path):
    from .shards import ShardSpec

    labels = None
    if a.labels:
        labels = tuple(ln.strip() for ln in _in_root(root, a.labels).read_text().splitlines() if ln.strip())
    return ShardSpec(fps=a.fps, size=a.size, short_side=a.short_side, jpeg_quality=a.jpeg_quality, raw=a.raw,
                     workers=a.workers, decode_threads=a.decode_threads, shard_bytes=a.shard_size,
                     ann_fps=a.ann_fps, tolerance=a.tolerance, labels=labels)


def _run(root: Path, jobs, problems, a) -> int:
    from .prepare import prepare, print_summary

    spec = _spec(a, root)
    result = prepare(root, jobs, spec.stage_spec(), spec.workers, spec.shard_bytes, problems, not a.quiet,
                     spec.decode_threads)
    print_summary(result, root)
    print(f"report: {root / 'prep_report.json'}")
    if result.manifest is None:
        print("vt-prep: error: no usable video", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_PARTIAL if result.problems else EXIT_OK


def cmd_prepare(a) -> int:
    from .jobs import Layout, discover, read_splits

    splits = read_splits(_in_root(a.root, a.splits)) if a.splits else {}
    test = [vid.strip() for vid in a.test.split(",") if vid.strip()]
    splits.update({vid: "test" for vid in test})
    layout = Layout(videos=a.videos, phases=a.phases, tools=a.tools, clips=a.clips, segments=a.segments,
                    splits=splits)
    jobs, problems = discover(Path(a.root), layout)
    _check_test_ids(test, Path(a.root), a.videos)
    return _run(Path(a.root), jobs, problems, a)


def _check_test_ids(test: list[str], root: Path, folder: str) -> None:
    """--test ids that name no video would silently leave the test split without them (or empty)."""
    from .jobs import find_videos

    known = find_videos(root, folder)[0]
    unknown = [vid for vid in test if vid not in known]
    if unknown:
        examples = ", ".join(sorted(known)[:3]) or "none found"
        raise ValueError(f"--test: no video with id {', '.join(unknown)} under {root / folder} "
                         f"(ids are file names without suffix, e.g. {examples})")


def cmd_synthetic(a) -> int:
    from .jobs import Job
    from .synthetic import (ACTION_CLASSES, ActionSpec, AnticipationSpec, SyntheticSpec, TALSpec, generate,
                            generate_actions, generate_anticipation, generate_tal)

    if a.kind == "tal":
        from .jobs import Layout, discover

        generate_tal(Path(a.out), TALSpec(num_videos=a.videos, test_videos=a.test_videos, classes=a.classes,
                                          fps=a.source_fps, size=a.source_size, video_seconds=tuple(a.video_seconds),
                                          action_seconds=tuple(a.action_seconds), seed=a.seed))
        jobs, problems = discover(Path(a.out), Layout(segments="segments.json"))
        return _run(Path(a.out), jobs, problems, a)
    if a.kind in ACTION_CLASSES:
        from .jobs import Layout, discover

        generate_actions(Path(a.out), ActionSpec(kind=a.kind, num_clips=a.videos, test_clips=a.test_videos,
                                                 fps=a.source_fps, size=a.source_size, seed=a.seed))
        jobs, problems = discover(Path(a.out), Layout(clips="clips.csv"))
        return _run(Path(a.out), jobs, problems, a)
    if a.kind == "anticipation":
        records = generate_anticipation(Path(a.out), AnticipationSpec(
            num_videos=a.videos, test_videos=a.test_videos, fps=a.source_fps, size=a.source_size, seed=a.seed))
    else:
        records = generate(Path(a.out), SyntheticSpec(
            num_videos=a.videos, test_videos=a.test_videos, fps=a.source_fps, size=a.source_size,
            phase_seconds=(a.min_phase, a.max_phase), seed=a.seed, tools=a.tools))
    jobs = [Job(r["id"], r["video"], r["split"], kind="phases", phases=r["annotation"], tools=r.get("tools"))
            for r in records]
    return _run(Path(a.out), jobs, [], a)


def cmd_verify(a) -> int:
    from framework.data.manifest import Manifest, ManifestError, check_shard

    manifest = Manifest.load(Path(a.root))
    bad = 0
    for shard in manifest.shards:
        try:
            check_shard(Path(a.root), shard, full=True)
            print(f"ok       {shard.name}")
        except ManifestError as e:
            bad += 1
            print(f"CORRUPT  {e}")
    print(f"{len(manifest.shards) - bad} of {len(manifest.shards)} shards ok")
    return 1 if bad else 0


def _layout_args(p: argparse.ArgumentParser, phases: str | None) -> None:
    p.add_argument("--root", required=True, help="data root: videos, annotations and the output live here; "
                                                 "the paths below are relative to it")
    p.add_argument("--videos", default="videos", help="folder of videos under the root (any container)")
    p.add_argument("--phases", default=phases, help="per-frame label files, a pattern with {id} (Cholec80 style)")
    p.add_argument("--tools", help="tool presence files, a pattern with {id} (Cholec80 tool_annotations style)")
    p.add_argument("--clips", help="clip labels CSV under the root (Kinetics style)")
    p.add_argument("--segments", help="temporal segments JSON under the root (ActivityNet style)")
    p.add_argument("--splits", help="CSV of 'id,split' lines (phases / unlabeled; default split: train)")
    p.add_argument("--test", default="", help="comma-separated video ids of the test split")
    _shard_args(p)
    p.set_defaults(func=cmd_prepare)


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vt-prep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    _layout_args(sub.add_parser("prepare", help="shards from any videos + annotations under ROOT"), None)
    _layout_args(sub.add_parser("shards", help="shards from ROOT/videos + ROOT/annotations/{id}.txt phases"),
                 "annotations/{id}.txt")
    p = sub.add_parser("synthetic", help="generate synthetic workflow videos and their shards")
    p.add_argument("--out", required=True)
    p.add_argument("--videos", type=int, default=24)
    p.add_argument("--test-videos", type=int, default=6)
    p.add_argument("--source-fps", type=float, default=10.0)
    p.add_argument("--source-size", type=int, default=64)
    p.add_argument("--min-phase", type=float, default=8.0, help="shortest phase, seconds")
    p.add_argument("--max-phase", type=float, default=20.0, help="longest phase, seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tools", action="store_true", help="also instruments in the frames and tool presence files")
    p.add_argument("--kind", choices=("workflow", "anticipation", "motion", "appearance", "tal"), default="workflow",
                   help="workflow: the phase task that needs memory; anticipation: noise frames and an "
                        "instrument at unpredictable times (the BN cheating experiment); motion / appearance: "
                        "action clips whose class is only in the motion / only in the appearance (clips.csv); "
                        "tal: long videos with actions as segments (segments.json, ActivityNet style)")
    p.add_argument("--classes", type=int, default=3, help="tal: number of action classes (1-4)")
    p.add_argument("--video-seconds", type=float, nargs=2, default=(40.0, 80.0), metavar=("LO", "HI"),
                   help="tal: video length range")
    p.add_argument("--action-seconds", type=float, nargs=2, default=(2.0, 8.0), metavar=("LO", "HI"),
                   help="tal: action length range (background of 2-10 s between actions)")
    _shard_args(p)
    p.set_defaults(func=cmd_synthetic)
    p = sub.add_parser("verify", help="check shards against the manifest (size, header, sha256)")
    p.add_argument("--root", required=True)
    p.set_defaults(func=cmd_verify)
    a = parser.parse_args(argv)
    start = time.time()
    try:
        code = a.func(a)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # user-facing errors: bad spec, bad files
        print(f"vt-prep: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"done in {time.time() - start:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
