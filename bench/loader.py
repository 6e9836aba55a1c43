"""Loader throughput: our FFCV shard loader vs the usual ways of feeding video frames.

Same synthetic videos (360×360 H.264 source), same random clips (B × T consecutive frames at the source
rate, the clips of SequenceLoader's epoch), 224² uint8 output, same CPU budget (`--workers`):
  (1) ours: SequenceLoader(sampling="clips") over JPEG shards;
  (2) PyAV: decode the source mp4 per clip (seek + decode + resize), torch DataLoader (PySlowFast/MMAction2);
  (3) JPEG folder: frames extracted to files, read with PIL in a torch DataLoader (the BN-pitfalls code);
  (4) bare decode: the shards' own JPEG bytes, preloaded in memory, decoded by FFCV's libjpeg-turbo call in a
      thread pool, nothing else (the limit for (1)).
Plus our loader's storage options: raw instead of JPEG, process cache instead of os_cache, 1 worker.
Methods run interleaved, `--rounds` times each (the machine may be shared); the median is reported.

    python -m bench.loader [--rounds 3] [--workers 2] [--out docs/BENCHMARKS.md]
    python -m bench.loader --smoke          # tiny and quick: checks the script runs, writes nothing
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SIZE = 224


@dataclass(frozen=True)
class Setup:
    videos: int = 6
    source: int = 360  # source frames are source × source (360p)
    fps: float = 10.0  # source rate; shards and clips keep every frame
    phase_seconds: tuple = (4.0, 8.0)
    batch: int = 8
    seq_len: int = 16
    workers: int = 2


# -- data --------------------------------------------------------------------------------------------
def prepare(work: Path, s: Setup) -> dict:
    """Source videos, JPEG shards, raw shards and a JPEG folder under work/ (kept between runs)."""
    from data_prep.shards import ShardSpec, VideoItem, write_shards
    from data_prep.synthetic import SyntheticSpec, generate

    stamp = work / "setup.json"
    key = json.dumps({k: v for k, v in asdict(s).items() if k not in ("batch", "seq_len", "workers")})
    if not (stamp.is_file() and stamp.read_text() == key):
        shutil.rmtree(work, ignore_errors=True)
        spec = SyntheticSpec(num_videos=s.videos, test_videos=0, fps=s.fps, size=s.source,
                             phase_seconds=s.phase_seconds, seed=0)
        records = generate(work / "jpeg", spec)
        items = [VideoItem(r["id"], r["video"], r["annotation"], r["split"]) for r in records]
        write_shards(work / "jpeg", items, ShardSpec(fps=s.fps, size=SIZE, jpeg_quality=90))
        (work / "raw").mkdir()
        for sub in ("videos", "annotations"):
            (work / "raw" / sub).symlink_to(work / "jpeg" / sub)
        write_shards(work / "raw", items, ShardSpec(fps=s.fps, size=SIZE, raw=True))
        extract_jpeg_folder(work / "jpeg", work / "folder", s.fps)
        stamp.write_text(key)
    return {"jpeg": work / "jpeg", "raw": work / "raw", "folder": work / "folder"}


def extract_jpeg_folder(root: Path, out: Path, fps: float) -> None:
    """folder/<video id>/<frame:06d>.jpg at 224², quality 90 (as the shards)."""
    from PIL import Image

    from data_prep.decode import decode_video
    from framework.data.manifest import Manifest

    for v in Manifest.load(root).videos:
        (out / v.id).mkdir(parents=True)
        for k, frame in enumerate(decode_video(root / v.source, fps, SIZE).frames):
            Image.fromarray(frame).save(out / v.id / f"{k:06d}.jpg", quality=90)


def disk_mb(paths) -> float:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()) / 2**20


# -- the four ways -----------------------------------------------------------------------------------
def clips_of(loader, epoch: int) -> list[tuple]:
    """(video entry, first frame) of every clip our loader reads in that epoch: all methods read these."""
    return [(loader.videos[c.video], c.offset) for step in loader.plan(epoch) for c in step if c.video >= 0]


class Ours:
    def __init__(self, root, s: Setup, **options):
        from framework.data.loader import SequenceLoader

        self.loader = SequenceLoader(root, "train", 0, 1, s.batch, s.seq_len, seed=0, sampling="clips",
                                     num_workers=options.pop("workers", s.workers), **options)
        self.run()  # JIT-compiles FFCV's pipeline

    def run(self) -> int:
        return sum(int(b.valid.sum()) for b in self.loader)


class FFCVAlone:
    """FFCV's Loader by itself on the same frames, one FFCV batch per clip as in ours: what our wrapper
    (lane assembly, copies, masks, seeds) adds on top of FFCV."""

    def __init__(self, root: Path, clips, s: Setup, decode: bool = True):
        from ffcv.loader import Loader, OrderOption

        from framework.data.manifest import Manifest
        from framework.data.schema import reader_pipelines

        pipelines = reader_pipelines()
        if not decode:  # FFCV's own cost per batch: the same traversal with the image field left out
            pipelines["image"] = None
        order = np.concatenate([video.start + offset + np.arange(s.seq_len) for video, offset in clips])
        self.loader = Loader(str(root / Manifest.load(root).shards[0].name), batch_size=s.seq_len,
                             num_workers=s.workers, order=OrderOption.SEQUENTIAL, indices=order,
                             pipelines=pipelines, os_cache=True, batches_ahead=2 * s.batch)
        torch.set_num_threads(1)  # FFCV raised it to num_workers (see SequenceLoader._streams)
        self.run()

    def run(self) -> int:
        n = sum(b[-1].shape[0] for b in self.loader)  # the label field: there with or without images
        torch.set_num_threads(1)
        return n


class PyAVClips(torch.utils.data.Dataset):
    def __init__(self, root: Path, clips, T: int):
        self.root, self.clips, self.T = root, clips, T

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        import av
        from av.video.reformatter import VideoReformatter

        video, offset = self.clips[i]
        out = []
        reformatter = VideoReformatter()
        with av.open(str(self.root / video.source)) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1  # the DataLoader's workers are the parallelism, as for the others
            start = offset / video.fps
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time + 0.5 / video.fps < start:
                    continue  # frames between the keyframe and the clip: decoded, thrown away
                out.append(reformatter.reformat(frame, width=SIZE, height=SIZE, format="rgb24").to_ndarray())
                if len(out) == self.T:
                    break
        return torch.from_numpy(np.stack(out))


class FolderClips(torch.utils.data.Dataset):
    def __init__(self, folder: Path, clips, T: int):
        self.folder, self.clips, self.T = folder, clips, T

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        from PIL import Image

        video, offset = self.clips[i]
        frames = [np.asarray(Image.open(self.folder / video.id / f"{k:06d}.jpg").convert("RGB"))
                  for k in range(offset, offset + self.T)]
        return torch.from_numpy(np.stack(frames))


class Torch:
    """A torch DataLoader over one of the datasets above, workers kept alive between rounds."""

    def __init__(self, dataset, s: Setup):
        self.dl = torch.utils.data.DataLoader(dataset, batch_size=s.batch, num_workers=s.workers,
                                              persistent_workers=True, prefetch_factor=2)

    def run(self) -> int:
        return sum(b.shape[0] * b.shape[1] for b in self.dl)


class BareDecode:
    """The shards' JPEG bytes for the same clips, in memory; only the decode is timed."""

    def __init__(self, root: Path, clips, s: Setup):
        from ffcv.reader import Reader

        from framework.data.manifest import Manifest

        self.T, self.workers = s.seq_len, s.workers
        shard = root / Manifest.load(root).shards[0].name
        reader = Reader(str(shard))
        sizes = dict(zip(reader.alloc_table["ptr"].tolist(), reader.alloc_table["size"].tolist()))
        ptrs = reader.metadata["f0"]["data_ptr"]
        data = np.fromfile(shard, np.uint8)
        self.jpegs = [data[p:p + sizes[p]].copy() for video, offset in clips
                      for p in ptrs[video.start + offset:video.start + offset + s.seq_len].tolist()]
        self.out = np.empty((len(self.jpegs), SIZE, SIZE, 3), np.uint8)

    def _decode(self, lo: int) -> None:
        from ffcv.libffcv import imdecode

        for i in range(lo, min(lo + self.T, len(self.jpegs))):
            imdecode(self.jpegs[i], self.out[i], SIZE, SIZE, SIZE, SIZE, 0, 0, 1, 1, False, False)

    def run(self) -> int:
        with ThreadPoolExecutor(self.workers) as pool:  # ctypes drops the GIL: decodes run in parallel
            list(pool.map(self._decode, range(0, len(self.jpegs), self.T)))
        return len(self.jpegs)


# -- measuring ---------------------------------------------------------------------------------------
def measure(methods: dict, rounds: int) -> dict:
    """Interleaved rounds; also the machine's load average before and after (others' jobs count)."""
    rates = {name: [] for name in methods}
    load = [os.getloadavg()[0]]
    for _ in range(rounds):
        for name, m in methods.items():  # interleaved: a burst of load elsewhere hits every method
            start = time.perf_counter()
            frames = m.run()
            rates[name].append(frames / (time.perf_counter() - start))
    load.append(os.getloadavg()[0])
    return {name: {"median": statistics.median(r), "runs": [round(x, 1) for x in r]} for name, r in rates.items()}, load


def bench(s: Setup, rounds: int, work: Path) -> dict:
    torch.set_num_threads(1)
    paths = prepare(work, s)
    ours = Ours(paths["jpeg"], s)
    clips = clips_of(ours.loader, ours.loader.epoch)  # the next epoch's clips: same count every epoch
    methods = {
        "ours": ours,
        # a quarter of the clips: PyAV is slow, and a rate does not need the whole epoch
        "pyav": Torch(PyAVClips(paths["jpeg"], clips[:max(s.batch, len(clips) // 4)], s.seq_len), s),
        "jpeg_folder_pil": Torch(FolderClips(paths["folder"], clips, s.seq_len), s),
        "bare_decode": BareDecode(paths["jpeg"], clips, s),
        "ffcv_alone": FFCVAlone(paths["jpeg"], clips, s),
        "ffcv_no_image": FFCVAlone(paths["jpeg"], clips, s, decode=False),
        "ours_raw": Ours(paths["raw"], s),
        "ours_process_cache": Ours(paths["jpeg"], s, os_cache=False),
        "ours_1_worker": Ours(paths["jpeg"], s, workers=1),
    }
    rates, load = measure(methods, rounds)
    med = {k: v["median"] for k, v in rates.items()}
    return {
        "setup": asdict(s), "rounds": rounds, "load_average": load, "frames_per_s": rates,
        "ratios": {"ours/pyav": med["ours"] / med["pyav"], "ours/jpeg_folder_pil": med["ours"] / med["jpeg_folder_pil"],
                   "ours/bare_decode": med["ours"] / med["bare_decode"]},
        "disk_mb": {"source_mp4": disk_mb([paths["jpeg"] / "videos"]),
                    "shards_jpeg": disk_mb(paths["jpeg"].glob("*.beton")),
                    "shards_raw": disk_mb(paths["raw"].glob("*.beton")),
                    "jpeg_folder": disk_mb([paths["folder"]])},
        "frames": sum(v.num_frames for v in ours.loader.videos),
    }


def report(r: dict) -> str:
    from bench.report import machine

    s, f, q, d = r["setup"], r["frames_per_s"], r["ratios"], r["disk_mb"]
    rows = [("(1) ours: FFCV JPEG shards, `SequenceLoader(sampling=\"clips\")`", "ours"),
            ("(2) PyAV: decode source mp4 per clip + resize, torch DataLoader", "pyav"),
            ("(3) JPEG folder read with PIL, torch DataLoader", "jpeg_folder_pil"),
            ("(4) bare libjpeg-turbo decode of the shards' JPEG bytes (the limit)", "bare_decode"),
            ("FFCV Loader alone, same chunks (no lane assembly)", "ffcv_alone"),
            ("FFCV Loader alone, image field not read (FFCV's own per-batch cost)", "ffcv_no_image"),
            ("ours, raw (uncompressed) shards", "ours_raw"),
            ("ours, FFCV process cache instead of os_cache", "ours_process_cache"),
            ("ours, 1 worker", "ours_1_worker")]
    def t(k):
        return 1e6 / f[k]["median"]

    table = "\n".join(f"| {label} | {f[k]['median']:.0f} | {', '.join(f'{x:.0f}' for x in f[k]['runs'])} |"
                      for label, k in rows)
    return f"""## Loader throughput (`make bench-loader`, `python -m bench.loader`)
Machine: {machine()}; {s['workers']} workers (threads for FFCV and (4), processes for the torch DataLoaders).
{s['videos']} synthetic videos, {r['frames']} frames, {s['source']}×{s['source']} H.264 at {s['fps']:g} fps;
random clips of {s['batch']} × {s['seq_len']} consecutive frames (the clips of our loader's epoch, every method
reads the same ones; PyAV a quarter of them), {SIZE}×{SIZE} uint8 out; JPEG quality 90; page cache warm.
Median of {r['rounds']} interleaved rounds: the machine was shared with other jobs (1-min load
average {r['load_average'][0]:.1f} before, {r['load_average'][1]:.1f} after, on {os.cpu_count()} cores), so single
runs are noisy.

| method | frames/s (median) | runs |
|---|---|---|
{table}

| ratio | measured | goal |
|---|---|---|
| (1)/(2) ours / PyAV | {q['ours/pyav']:.2f} | ≥ 3 |
| (1)/(3) ours / JPEG folder + PIL | {q['ours/jpeg_folder_pil']:.2f} | ≥ 2 |
| (1)/(4) ours / bare decode | {q['ours/bare_decode']:.2f} | ≥ 0.8 |

Where the time goes (µs per frame, medians): bare JPEG decode {t('bare_decode'):.0f}; FFCV's Loader on the same
chunks {t('ffcv_alone'):.0f}, of which traversal, batching and the scalar fields (image not read)
{t('ffcv_no_image'):.1f}; ours {t('ours'):.0f}, i.e. lane assembly, copy-out, masks and seeds add
{t('ours') - t('ffcv_alone'):+.0f} on top of FFCV.

| on disk | MB |
|---|---|
| source mp4 (H.264, CRF 18, {s['source']}²) | {d['source_mp4']:.1f} |
| FFCV shards, JPEG {SIZE}² | {d['shards_jpeg']:.1f} |
| FFCV shards, raw {SIZE}² | {d['shards_raw']:.1f} |
| JPEG folder {SIZE}² | {d['jpeg_folder']:.1f} |
"""


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work", type=Path, default=REPO / "data" / "bench-loader")
    p.add_argument("--out", type=Path, default=None, help="write a section into this markdown file")
    p.add_argument("--smoke", action="store_true", help="two tiny videos, one round, nothing written")
    a = p.parse_args(argv)
    s = Setup(workers=a.workers)
    if a.smoke:
        s = Setup(videos=2, source=64, phase_seconds=(0.5, 1.0), batch=2, seq_len=4, workers=a.workers)
        a.rounds, a.out, a.work = 1, None, a.work.with_name(a.work.name + "-smoke")
    result = bench(s, a.rounds, a.work)
    print(json.dumps(result, indent=1))
    if a.out:
        from bench.report import write_section

        write_section(a.out, "loader", report(result))
    return result


if __name__ == "__main__":
    main()
