"""The preparation run: stage every video in parallel, pack shards, write the manifest and the report.

Bad input never stops the run: each video that fails becomes a Problem and the rest go on. Output does not
depend on the number of workers (staging is per video; packing sorts by id), and a rerun reuses every video
already staged (see stage.py).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from framework.data import jit_cache
from framework.data.manifest import Manifest, ManifestError

from .assemble import (
    Staged,
    build_entries,
    label_space,
    make_manifest,
    plan_shards,
    write_all,
)
from .jobs import Job
from .progress import Bar, install
from .report import Problem, format_table, write_report
from .stage import Outcome, StageSpec, stage, staging_paths


@dataclass
class PrepResult:
    manifest: Manifest | None
    problems: list[Problem] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def decode_threads(workers: int, jobs: int, cores: int | None = None) -> int:
    """Decoder threads per worker: workers × threads <= cores, counting only the workers that will have a
    video (2 videos on 8 cores with --workers 8: 4 threads each)."""
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // max(1, min(workers, jobs)))


def stage_all(root: Path, jobs: list[Job], spec: StageSpec, workers: int, progress: bool,
              threads: int | None = None) -> list[Outcome]:
    threads = threads or decode_threads(workers, len(jobs))
    bar, outcomes = Bar(len(jobs), progress), []

    def refresh():
        bar.refresh(len(outcomes), sum(o.reused for o in outcomes), sum(o.problem is not None for o in outcomes))

    def done(outcome: Outcome):
        outcomes.append(outcome)
        refresh()

    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            done(stage(root, job, spec, threads))
    else:
        with ProcessPoolExecutor(min(workers, len(jobs)), initializer=install, initargs=(bar.shared,)) as pool:
            futures = {pool.submit(stage, root, job, spec, threads): job for job in jobs}
            pending, ffcv = set(futures), False
            while pending:  # wake up every second to move the bar inside long videos
                finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in finished:
                    done(_result(future, futures[future]))
                if not ffcv and bar.decoding():
                    # shards will be written: import FFCV now, while the workers decode, not after them (torch
                    # and numba take seconds even with the compile cached). Here, in the main thread: numba's
                    # thread pool must start in the thread that later forks FFCV's writer processes.
                    jit_cache.enable()
                    ffcv = True
                refresh()
    bar.close()
    return sorted(outcomes, key=lambda o: o.job.id)


def _result(future, job: Job) -> Outcome:
    try:
        return future.result()
    except Exception as e:  # noqa: BLE001  a worker killed by a crashing decoder breaks the pool: the videos
        # still queued are reported (a rerun retries them), the staged ones are kept
        return Outcome(job, Problem(job.video, f"worker process failed ({type(e).__name__})", "decode"))


def _consistent_tools(staged: list[Staged]) -> tuple[list[Staged], list[Problem]]:
    """All tool files must name the same tools in the same order (bit i means the same tool everywhere)."""
    names = next((s.meta["tools"]["names"] for s in staged if s.meta["tools"]), None)
    kept, problems = [], []
    for s in staged:
        if s.meta["tools"] and s.meta["tools"]["names"] != names:
            problems.append(Problem(s.meta["job"]["video"], f"tool columns {s.meta['tools']['names']} differ from "
                                                           f"{names} in the other tool files", "annotations"))
        else:
            kept.append(s)
    return kept, problems


def prepare(root: Path, jobs: list[Job], spec: StageSpec, workers: int = 1, shard_bytes: int | None = None,
            problems: list[Problem] = (), progress: bool = True, threads: int | None = None) -> PrepResult:
    """`threads`: decoder threads per worker (None: decode_threads)."""
    root = Path(root)
    problems = list(problems)
    began = time.perf_counter()
    outcomes = stage_all(root, jobs, spec, workers, progress, threads)
    staged_at = time.perf_counter()
    problems += [o.problem for o in outcomes if o.problem]
    staged = [Staged(o.job.id, o.job.split, o.job.kind, staging_paths(root, o.job)[0], o.meta)
              for o in outcomes if o.meta]
    staged, bad_tools = _consistent_tools(staged)
    problems += bad_tools
    stats = {"videos": len(staged), "reused": sum(o.reused for o in outcomes if o.meta),
             "frames": sum(s.meta["num_frames"] for s in staged),
             "new_frames": sum(o.meta["num_frames"] for o in outcomes if o.meta and not o.reused),
             "stage_s": round(staged_at - began, 3)}
    manifest = None
    if staged:
        labels = label_space(staged, spec.labels)
        plans = plan_shards(staged, shard_bytes)
        build_entries(plans, labels, spec.fps)
        previous = _previous_shards(root)
        shards = write_all(root, plans, labels, spec.jpeg_quality, spec.raw, workers, previous)
        manifest = make_manifest(labels, plans, shards, _prep_settings(spec, shard_bytes))
        _remove_stale_shards(root, previous, manifest)
        manifest.save(root)
        stats["shards"] = len(shards)
    stats["write_s"] = round(time.perf_counter() - staged_at, 3)
    write_report(root, problems, stats)
    return PrepResult(manifest, problems, stats)


def _prep_settings(spec: StageSpec, shard_bytes) -> dict:
    settings = asdict(spec)
    settings["shard_bytes"] = shard_bytes
    return settings


def _previous_shards(root: Path) -> dict:
    try:
        return {s.name: s for s in Manifest.load(root).shards}
    except (ManifestError, ValueError, TypeError, KeyError):  # none, or unreadable: everything gets written
        return {}


def _remove_stale_shards(root: Path, previous: dict, manifest: Manifest) -> None:
    """Shards the previous manifest listed and this one does not (e.g. a split now packed differently)."""
    keep = {s.name for s in manifest.shards}
    for name in previous:
        if name not in keep and (root / name).is_file():
            (root / name).unlink()


def print_summary(result: PrepResult, root: Path) -> None:
    if result.manifest:
        for s in result.manifest.shards:
            n = sum(v.shard == s.name for v in result.manifest.videos)
            print(f"{s.split:>6}: {n} videos, {s.num_samples} frames → {Path(root) / s.name} "
                  f"({s.size / 2**20:.1f} MiB)")
        print(f"labels: {', '.join(result.manifest.labels) or '(unlabeled)'}")
        st = result.stats
        print(f"{st['videos']} videos ({st['reused']} reused from an earlier run), {st['frames']} frames")
        print(_throughput(st))
    print(format_table(result.problems))


def _throughput(st: dict) -> str:
    """Frames sampled per second of this run (videos reused from an earlier run do not count)."""
    if not st["new_frames"]:
        return f"nothing to decode: checked in {st['stage_s']:.1f} s, shards in {st['write_s']:.1f} s"
    total = st["stage_s"] + st["write_s"]
    return (f"{st['new_frames']} new frames in {total:.1f} s: {st['new_frames'] / total:.0f} frames/s "
            f"(decoding {st['stage_s']:.1f} s at {st['new_frames'] / max(st['stage_s'], 1e-9):.0f} frames/s, "
            f"shards {st['write_s']:.1f} s)")
