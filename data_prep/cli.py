"""`vt-prep`: make shards.

  vt-prep synthetic --out data/demo [--videos 24 --test-videos 6 --seed 0 ...]   videos + annotations + shards
  vt-prep shards --root DIR [--test video038,video039] [--fps 5 --size 64]      shards from videos/ + annotations/
  vt-prep verify --root DIR                                                      check shards against the manifest
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _shard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fps", type=float, default=5.0, help="sampling rate of the shards")
    p.add_argument("--size", type=int, default=64, help="frames are resized to size × size")
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--raw", action="store_true", help="store raw pixels instead of JPEG")


def _shard_spec(a):
    from .shards import ShardSpec

    return ShardSpec(fps=a.fps, size=a.size, jpeg_quality=a.jpeg_quality, raw=a.raw)


def cmd_synthetic(a) -> int:
    from .shards import VideoItem, write_shards
    from .synthetic import SyntheticSpec, generate

    spec = SyntheticSpec(num_videos=a.videos, test_videos=a.test_videos, fps=a.source_fps, size=a.source_size,
                         phase_seconds=(a.min_phase, a.max_phase), seed=a.seed)
    records = generate(Path(a.out), spec)
    items = [VideoItem(r["id"], r["video"], r["annotation"], r["split"]) for r in records]
    return _report(write_shards(Path(a.out), items, _shard_spec(a)), a.out)


def cmd_shards(a) -> int:
    from .shards import items_from_folder, write_shards

    items = items_from_folder(Path(a.root), set(filter(None, a.test.split(","))))
    return _report(write_shards(Path(a.root), items, _shard_spec(a)), a.root)


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
    return 1 if bad else 0


def _report(manifest, root) -> int:
    for s in manifest.shards:
        n = sum(v.split == s.split for v in manifest.videos)
        print(f"{s.split:>6}: {n} videos, {s.num_samples} frames → {Path(root) / s.name} ({s.size / 2**20:.1f} MiB)")
    print(f"labels: {', '.join(manifest.labels)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vt-prep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("synthetic", help="generate synthetic workflow videos and their shards")
    p.add_argument("--out", required=True)
    p.add_argument("--videos", type=int, default=24)
    p.add_argument("--test-videos", type=int, default=6)
    p.add_argument("--source-fps", type=float, default=10.0)
    p.add_argument("--source-size", type=int, default=64)
    p.add_argument("--min-phase", type=float, default=8.0, help="shortest phase, seconds")
    p.add_argument("--max-phase", type=float, default=20.0, help="longest phase, seconds")
    p.add_argument("--seed", type=int, default=0)
    _shard_args(p)
    p.set_defaults(func=cmd_synthetic)
    p = sub.add_parser("shards", help="shards from ROOT/videos/*.mp4 + ROOT/annotations/*.txt")
    p.add_argument("--root", required=True)
    p.add_argument("--test", default="", help="comma-separated video ids of the test split")
    _shard_args(p)
    p.set_defaults(func=cmd_shards)
    p = sub.add_parser("verify", help="check shards against the manifest checksums")
    p.add_argument("--root", required=True)
    p.set_defaults(func=cmd_verify)
    a = parser.parse_args(argv)
    start = time.time()
    try:
        code = a.func(a)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # user-facing errors: bad spec, bad files
        print(f"vt-prep: error: {e}", file=sys.stderr)
        return 2
    print(f"done in {time.time() - start:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
