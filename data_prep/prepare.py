"""The preparation run: stage every video in parallel, pack shards, write the manifest and the report.

Bad input never stops the run: each video that fails becomes a Problem and the rest go on. Output does not
depend on the number of workers (staging is per video; packing sorts by id), and a rerun reuses every video
already staged (see stage.py).
"""
from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

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
from .report import Problem, format_table, write_report
from .stage import Outcome, StageSpec, stage, staging_paths


@dataclass
class PrepResult:
    manifest: Manifest | None
    problems: list[Problem] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def stage_all(root: Path, jobs: list[Job], spec: StageSpec, workers: int, progress: bool) -> list[Outcome]:
    bar = tqdm(total=len(jobs), desc="videos", unit="video", disable=not progress, dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 30)  # a log file gets a line every 30 s, not a flood
    frames, outcomes = 0, []

    def done(outcome: Outcome):
        nonlocal frames
        frames += outcome.meta["num_frames"] if outcome.meta else 0
        outcomes.append(outcome)
        bar.set_postfix(frames=frames, skipped=sum(o.problem is not None for o in outcomes), refresh=False)
        bar.update()

    if workers <= 1:
        for job in jobs:
            done(stage(root, job, spec))
    else:
        with ProcessPoolExecutor(workers) as pool:
            futures = {pool.submit(stage, root, job, spec): job for job in jobs}
            for future in as_completed(futures):
                try:
                    done(future.result())
                except Exception as e:  # noqa: BLE001  a worker killed by a crashing decoder breaks the pool:
                    # the videos still queued are reported (a rerun retries them), the staged ones are kept
                    job = futures[future]
                    done(Outcome(job, Problem(job.video, f"worker process failed ({type(e).__name__})", "decode")))
    bar.close()
    return sorted(outcomes, key=lambda o: o.job.id)


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
            problems: list[Problem] = (), progress: bool = True) -> PrepResult:
    root = Path(root)
    problems = list(problems)
    outcomes = stage_all(root, jobs, spec, workers, progress)
    problems += [o.problem for o in outcomes if o.problem]
    staged = [Staged(o.job.id, o.job.split, o.job.kind, staging_paths(root, o.job)[0], o.meta)
              for o in outcomes if o.meta]
    staged, bad_tools = _consistent_tools(staged)
    problems += bad_tools
    stats = {"videos": len(staged), "reused": sum(o.reused for o in outcomes if o.meta),
             "frames": sum(s.meta["num_frames"] for s in staged)}
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
        print(f"{result.stats['videos']} videos ({result.stats['reused']} reused from an earlier run), "
              f"{result.stats['frames']} frames")
    print(format_table(result.problems))
