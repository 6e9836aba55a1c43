"""The preparation run as a whole: bad input is reported, not fatal; output is independent of the worker
count; an interrupted run resumes without redoing finished videos; shards are checked against the manifest."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from prep_media import read_shard, write_audio, write_phases, write_video

from data_prep.assemble import Staged, estimated_size, plan_shards
from data_prep.cli import main
from data_prep.report import EXIT_PARTIAL
from framework.data.manifest import Manifest, ManifestError, check_shard, sha256

REPO = Path(__file__).resolve().parents[1]
PHASES = ["a"] * 20 + ["b"] * 30


def good_video(root: Path, vid: str, n: int = len(PHASES), suffix: str = ".mp4") -> None:
    write_video(root / "videos" / f"{vid}{suffix}", n, fps=25)
    write_phases(root / "annotations" / f"{vid}.txt", (PHASES * 8)[:n])


def shards_of(root: Path) -> dict[str, str]:
    return {p.name: sha256(p) for p in sorted(root.glob("*.beton"))}


def run(root: Path, *args: str) -> int:
    return main(["prepare", "--root", str(root), "--phases", "annotations/{id}.txt", "--quiet", "--size", "32",
                 *args])


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Six good videos of different lengths (2–4 s at 25 fps), one of them in the test split."""
    root = tmp_path_factory.mktemp("videos")
    for i, n in enumerate([50, 75, 60, 100, 55, 90]):
        good_video(root, f"v{i}", n)
    (root / "splits.csv").write_text("v5,test\n")
    return root


def copy_inputs(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".vt-prep", "*.beton", "*.json"))
    return dst


def test_broken_inputs_are_skipped_and_reported(tmp_path, capsys):
    root = tmp_path
    for vid in ("good0", "good1"):
        good_video(root, vid)
    good_video(root, "truncated")
    data = (root / "videos" / "truncated.mp4").read_bytes()
    (root / "videos" / "truncated.mp4").write_bytes(data[: len(data) // 2])
    good_video(root, "truncated_mkv", 100, suffix=".mkv")
    data = (root / "videos" / "truncated_mkv.mkv").read_bytes()
    (root / "videos" / "truncated_mkv.mkv").write_bytes(data[: len(data) // 3])
    (root / "videos" / "empty.mp4").write_bytes(b"")
    (root / "videos" / "random.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    write_audio(root / "videos" / "audio.m4a", seconds=2.0)
    (root / "videos" / "notes.txt").write_text("recorded on the old tower\n")
    for vid in ("empty", "random", "audio", "notes"):
        write_phases(root / "annotations" / f"{vid}.txt", PHASES)
    write_video(root / "videos" / "long_labels.mp4", 50, fps=25)
    write_phases(root / "annotations" / "long_labels.txt", PHASES * 3)
    write_video(root / "videos" / "short_labels.mp4", 150, fps=25)
    write_phases(root / "annotations" / "short_labels.txt", PHASES)
    write_video(root / "videos" / "unknown.mp4", 50, fps=25)
    write_phases(root / "annotations" / "unknown.txt", ["a"] * 25 + ["dancing"] * 25)
    write_video(root / "videos" / "garbled.mp4", 50, fps=25)
    (root / "annotations" / "garbled.txt").write_text("Frame\tPhase\n0\ta\nzero\tb\n")
    write_video(root / "videos" / "orphan.mp4", 50, fps=25)
    (root / "labels.txt").write_text("a\nb\n")

    code = run(root, "--workers", "2", "--labels", "labels.txt")

    assert code == EXIT_PARTIAL == 3
    manifest = Manifest.load(root)
    assert [v.id for v in manifest.videos] == ["good0", "good1"]
    assert manifest.labels == ["a", "b"]
    report = json.loads((root / "prep_report.json").read_text())
    assert report["status"] == "partial" and report["videos"] == 2
    skipped = {p["file"]: (p["stage"], p["reason"]) for p in report["skipped"]}
    expected = {
        "videos/truncated.mp4": ("decode", "cannot open"),
        "videos/truncated_mkv.mkv": ("decode", "truncated"),
        "videos/empty.mp4": ("decode", "cannot open"),
        "videos/random.mp4": ("decode", "cannot open"),
        "videos/audio.m4a": ("decode", "no video stream (audio)"),
        "videos/notes.txt": ("decode", "cannot open"),
        "videos/long_labels.mp4": ("annotations", "labels run to"),
        "videos/short_labels.mp4": ("annotations", "labels end at"),
        "videos/unknown.mp4": ("annotations", "unknown label names ['dancing']"),
        "videos/garbled.mp4": ("annotations", "expected 2 tab-separated fields"),
        "videos/orphan.mp4": ("discover", "no annotation file annotations/orphan.txt"),
    }
    assert set(skipped) == set(expected)
    for file, (stage, reason) in expected.items():
        assert skipped[file][0] == stage and reason in skipped[file][1], (file, skipped[file])
    printed = capsys.readouterr().out
    assert "11 input(s) skipped" in printed and all(f in printed for f in expected)
    assert main(["verify", "--root", str(root)]) == 0


def test_output_does_not_depend_on_worker_count(videos, tmp_path):
    """Byte-identical shards and manifest with 1 and 2 workers; the size cap splits each split into several
    shards, a video never straddles two, and samples run consecutively from the video's start."""
    one, two = copy_inputs(videos, tmp_path / "one"), copy_inputs(videos, tmp_path / "two")
    # FFCV pads to 8 MiB pages: a small shard is 16 MiB, so a 15 MiB cap gives every video its own shard
    assert run(one, "--splits", "splits.csv", "--workers", "1", "--shard-size", "15M") == 0
    assert run(two, "--splits", "splits.csv", "--workers", "2", "--shard-size", "15M") == 0
    assert shards_of(one) == shards_of(two)
    assert (one / "manifest.json").read_bytes() == (two / "manifest.json").read_bytes()

    manifest = Manifest.load(one)
    assert [s.name for s in manifest.shards] == [f"train-{k:05d}.beton" for k in range(5)] + ["test.beton"]
    for shard in manifest.shards:
        inside = [(i, v) for i, v in enumerate(manifest.videos) if v.shard == shard.name]
        data = read_shard(one / shard.name)
        assert shard.size == estimated_size(shard.num_samples, sum(len(img[2]) for img in data["image"]))
        assert len(data["video"]) == shard.num_samples == sum(v.num_frames for _, v in inside)
        for i, v in inside:
            rows = slice(v.start, v.start + v.num_frames)
            assert (data["video"][rows] == i).all()
            np.testing.assert_array_equal(data["frame"][rows], np.arange(v.num_frames))
    assert [v.num_frames for v in manifest.videos] == [10, 15, 12, 20, 11, 18]  # 5 fps of 2-4 s


def test_progress_counts_frames_in_the_workers(videos, tmp_path, capsys):
    """The bar counts sampled frames as the worker processes decode them (its total, an estimate while they
    run, ends at the real count), with frames/s; the summary prints the run's frames/s."""
    import re

    root = copy_inputs(videos, tmp_path / "data")
    assert main(["prepare", "--root", str(root), "--phases", "annotations/{id}.txt", "--size", "32",
                 "--workers", "2"]) == 0
    frames = sum(v.num_frames for v in Manifest.load(root).videos)
    out = capsys.readouterr()
    last = out.err.replace("\r", "\n").strip().splitlines()[-1]
    assert re.search(rf"frames: 100%.* {frames}/{frames} \[.*frame/s.*videos=6/6", last), last
    assert re.search(rf"{frames} new frames in [\d.]+ s: \d+ frames/s", out.out), out.out


def test_size_cap_packs_whole_videos():
    """Greedy packing in (split, id) order; a shard goes over the cap only when one video alone does."""
    mib = 2**20

    def video(vid, split, payload_mib):
        return Staged(vid, split, "phases", Path(f"{vid}.npz"), {"bytes": payload_mib * mib, "num_frames": 100})

    staged = [video("c", "train", 5), video("a", "train", 5), video("b", "train", 5), video("d", "train", 5),
              video("e", "train", 40), video("f", "train", 1), video("x", "test", 1)]
    plans = plan_shards(staged, 25 * mib)  # 3 x 5 MiB: 2 data pages + 1 metadata page (8 MiB each) + tables
    assert [(p.name, [v.id for v in p.videos]) for p in plans] == [
        ("train-00000.beton", ["a", "b", "c"]), ("train-00001.beton", ["d"]), ("train-00002.beton", ["e"]),
        ("train-00003.beton", ["f"]), ("test.beton", ["x"])]
    assert [p.name for p in plan_shards(staged, None)] == ["train.beton", "test.beton"]


def _markers(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (root / ".vt-prep" / "staging").glob("*.json")}


def test_killed_run_resumes_without_redoing_finished_videos(videos, tmp_path):
    killed, whole = copy_inputs(videos, tmp_path / "killed"), copy_inputs(videos, tmp_path / "whole")
    cmd = [sys.executable, "-m", "data_prep.cli", "prepare", "--root", str(killed), "--phases",
           "annotations/{id}.txt", "--quiet", "--size", "32", "--fps", "25", "--splits", "splits.csv"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(_markers(killed) if (killed / ".vt-prep" / "staging").is_dir() else {}) < 2:
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be interrupted"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _markers(killed)
    assert 2 <= len(done) < 6 and not (killed / "manifest.json").exists()

    assert run(killed, "--fps", "25", "--splits", "splits.csv") == 0
    assert run(whole, "--fps", "25", "--splits", "splits.csv") == 0
    report = json.loads((killed / "prep_report.json").read_text())
    assert report["reused"] == len(done), "every video finished before the kill is reused"
    assert {k: v for k, v in _markers(killed).items() if k in done} == done, "and not staged again"
    assert shards_of(killed) == shards_of(whole)
    assert (killed / "manifest.json").read_bytes() == (whole / "manifest.json").read_bytes()


def test_rerun_after_an_annotation_changes_redoes_only_that_video(videos, tmp_path):
    """...and rewrites only the shard that holds it."""
    root = copy_inputs(videos, tmp_path / "data")
    assert run(root, "--splits", "splits.csv") == 0
    before, shards = _markers(root), {p.name: p.stat().st_mtime_ns for p in root.glob("*.beton")}
    write_phases(root / "annotations" / "v2.txt", ["b"] * 60)
    assert run(root, "--splits", "splits.csv") == 0
    after = _markers(root)
    assert [k for k in before if before[k] != after[k]] == ["v2.json"]
    assert json.loads((root / "prep_report.json").read_text())["reused"] == 5
    assert (root / "test.beton").stat().st_mtime_ns == shards["test.beton"]
    assert (root / "train.beton").stat().st_mtime_ns != shards["train.beton"]
    assert main(["verify", "--root", str(root)]) == 0


def test_rerun_hashes_only_what_changed(videos, tmp_path, monkeypatch):
    """A rerun with nothing changed reads no input, staged file or shard (size and mtime are trusted). An
    annotation rewritten with its size kept (new content, new mtime) is hashed and its video redone; a video
    touched without a change is hashed once, not redone, and the rerun after that hashes nothing again."""
    from data_prep import assemble, identity

    root = copy_inputs(videos, tmp_path / "data")
    assert run(root, "--splits", "splits.csv") == 0
    hashed = []

    def counting(path, *args):
        hashed.append(Path(path).relative_to(root).as_posix())
        return sha256(path, *args)

    monkeypatch.setattr(identity, "sha256", counting)
    monkeypatch.setattr(assemble, "sha256", counting)
    assert run(root, "--splits", "splits.csv") == 0
    assert hashed == []

    def rewrite(path, text):
        st = path.stat()
        path.write_text(text)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    ann = root / "annotations" / "v2.txt"
    changed = ann.read_text().replace("\ta\n", "\tb\n", 1)
    assert len(changed) == len(ann.read_text()) and changed != ann.read_text()
    rewrite(ann, changed)
    video = root / "videos" / "v3.mp4"
    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 10**9))
    before, shards = _markers(root), {p.name: p.stat().st_mtime_ns for p in root.glob("*.beton")}
    assert run(root, "--splits", "splits.csv") == 0
    assert sorted(hashed) == [".vt-prep/staging/v2.npz", "annotations/v2.txt", "train.beton", "videos/v3.mp4"]
    report = json.loads((root / "prep_report.json").read_text())
    assert report["reused"] == 5 and report["new_frames"] == 12, "v2 (12 frames) is redone, the others reused"
    after = _markers(root)
    assert sorted(k for k in before if before[k] != after[k]) == ["v2.json", "v3.json"]  # v3: its new mtime
    assert (root / "test.beton").stat().st_mtime_ns == shards["test.beton"]
    assert Manifest.load(root).labels == ["a", "b"] and main(["verify", "--root", str(root)]) == 0
    hashed.clear()
    assert run(root, "--splits", "splits.csv") == 0
    assert hashed == []


@pytest.fixture(scope="module")
def prepared(videos, tmp_path_factory) -> Path:
    root = copy_inputs(videos, tmp_path_factory.mktemp("prepared") / "data")
    assert run(root, "--splits", "splits.csv") == 0
    return root


def test_shard_header_must_match_manifest(prepared, tmp_path, capsys):
    from ffcv.types import HeaderType

    root = copy_inputs(prepared, tmp_path / "data")
    for p in prepared.glob("*.json"):
        shutil.copy(p, root)
    for p in prepared.glob("*.beton"):
        shutil.copy(p, root)
    shard = root / "train.beton"
    entry = Manifest.load(root).shard("train.beton")
    check_shard(root, entry)
    header = np.frombuffer(bytearray(shard.read_bytes()[: HeaderType.itemsize]), HeaderType).copy()
    header["num_samples"] += 1  # same size, different header: a shard from another run
    with open(shard, "r+b") as f:
        f.write(header.tobytes())
    with pytest.raises(ManifestError, match=f"train.beton holds {entry.num_samples + 1} samples, the manifest "
                                            f"says {entry.num_samples}"):
        check_shard(root, entry)
    with open(shard, "r+b") as f:  # a clobbered field table
        f.seek(HeaderType.itemsize + 1)
        f.write(b"xxxxx")
    with pytest.raises(ManifestError, match="train.beton does not have the header"):
        check_shard(root, entry)
    capsys.readouterr()
    assert main(["verify", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "CORRUPT  shard train.beton" in out and "ok       test.beton" in out


def test_inputs_outside_the_data_root_are_refused(tmp_path, capsys):
    """Manifest paths are relative to the data root: a video folder outside it is a usage error (exit 2)."""
    good_video(tmp_path / "elsewhere", "v0")
    (tmp_path / "root").mkdir()
    assert main(["prepare", "--root", str(tmp_path / "root"), "--videos", "../elsewhere/videos", "--quiet"]) == 2
    assert "must be relative to the data root" in capsys.readouterr().err


def test_header_layout_is_ffcvs():
    """check_header spells out FFCV's header types to avoid importing ffcv; they must be FFCV's."""
    from ffcv.types import CURRENT_VERSION, FieldDescType, HeaderType

    from framework.data.manifest import FFCV_VERSION, _ffcv_header_types

    assert _ffcv_header_types() == (HeaderType, FieldDescType) and FFCV_VERSION == CURRENT_VERSION


def test_loader_refuses_shard_with_wrong_sample_count(prepared, tmp_path):
    from framework.data.loader import SequenceLoader

    root = tmp_path / "data"
    shutil.copytree(prepared, root)
    raw = json.loads((root / "manifest.json").read_text())
    raw["shards"][0]["num_samples"] -= 1
    (root / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="samples, the manifest says"):
        SequenceLoader(root, raw["shards"][0]["split"], 0, 1, 2, 8)


def test_version_1_manifest_still_loads(prepared):
    """Manifests written before the optional fields existed load with their defaults."""
    from dataclasses import fields

    from framework.data.manifest import ShardEntry, VideoEntry

    raw = json.loads((prepared / "manifest.json").read_text())
    v1_video = {f.name for f in fields(VideoEntry)[:7]}
    v1_shard = {f.name for f in fields(ShardEntry)}
    old = {"labels": raw["labels"], "version": 1,
           "videos": [{k: v[k] for k in v1_video} for v in raw["videos"]],
           "shards": [{k: s[k] for k in v1_shard} for s in raw["shards"]]}
    with_tmp = prepared.parent / "v1"
    with_tmp.mkdir(exist_ok=True)
    (with_tmp / "manifest.json").write_text(json.dumps(old))
    m = Manifest.load(with_tmp)
    assert m.videos[0].tools == [] and m.tools == [] and m.videos[0].sha256 == ""
    assert m.tool_targets(m.videos[0]).shape == (m.videos[0].num_frames, 0)


def test_short_side_shards_of_mixed_aspect_ratios_train(tmp_path):
    """--short-side keeps each video's aspect ratio, so a landscape and a portrait video give frames of two
    sizes in one shard. The loader decodes the centred square of the short side, so their lanes stack."""
    from prep_media import PERIOD, frame_index, level

    from framework.data.loader import SequenceLoader

    for vid, (w, h) in {"wide": (64, 48), "tall": (48, 64)}.items():
        write_video(tmp_path / "videos" / f"{vid}.mp4", 40, fps=25, width=w, height=h)
        write_phases(tmp_path / "annotations" / f"{vid}.txt", (PHASES * 8)[:40])
    assert main(["prepare", "--root", str(tmp_path), "--phases", "annotations/{id}.txt", "--quiet",
                 "--short-side", "24", "--fps", "25"]) == 0
    sizes = {img[:2] for img in read_shard(next(tmp_path.glob("*.beton")))["image"]}
    assert sizes == {(24, 32), (32, 24)}  # (height, width) of the wide and the tall video
    loader = SequenceLoader(tmp_path, "train", 0, 1, batch_size=2, seq_len=8, shuffle=False)
    batch = next(iter(loader))
    assert batch.frames.shape == (2, 8, 24, 24, 3)
    for b in range(2):  # each frame is still the frame it claims to be (uniform grey level per frame)
        for t in range(8):
            assert frame_index(batch.frames[b, t].numpy()) == batch.frame[b, t] % PERIOD, (b, t)
            assert abs(float(batch.frames[b, t].float().mean()) - level(int(batch.frame[b, t]))) < 4
