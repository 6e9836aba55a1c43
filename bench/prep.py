"""Preparation throughput: `vt-prep prepare` vs the ffmpeg command users run today.

Same inputs, same cores, same parallelism (`--workers` processes at a time):
  ffmpeg:  `ffmpeg -i video.mp4 -vf fps=F,scale=224:224 frames/%06d.jpg`, one per video;
  vt-prep: `vt-prep prepare --root R --fps F --size 224 --workers N` (FFCV shards), cold (an empty JIT cache,
           as on the first run on a machine) and warm (the compile cached).
  (a) long videos: 2 × 5 min, 25 fps, 854×480 H.264, sampled at 1 fps;
  (b) short clips: 40 × 10 s, 25 fps, 640×360, sampled at 10 fps (Kinetics trimmed clips, `--clips`);
  (c) clip windows on full videos: 12 Kinetics rows of 10 s on the videos of (a), sampled at 10 fps
      (vt-prep seeks to the keyframe before each window; ffmpeg gets `-ss start -t 10` before `-i`).
Also the fixed start-up cost (a run on a 1-second video), a rerun with nothing changed, and decode-only
frames/s of PyAV per decoder threading setting, alone and with `--workers` decoders at once (how the
decoder threads were chosen). Inputs are made with PyAV under data/bench-prep/ (kept between runs);
ffmpeg is installed from apt when missing. Waits (up to --wait-s) for a 1-minute load below --max-load.

    python -m bench.prep [--rounds 3] [--workers 2] [--out docs/BENCHMARKS.md]
    python -m bench.prep --smoke          # tiny and quick: checks the script runs, writes nothing
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIZE = 224


@dataclass(frozen=True)
class Setup:
    long_videos: int = 2
    long_seconds: float = 300.0
    long_size: tuple = (854, 480)
    long_fps: float = 1.0  # sampling rate of (a)
    clips: int = 40
    clip_seconds: float = 10.0
    clip_size: tuple = (640, 360)
    clip_fps: float = 10.0  # sampling rate of (b) and (c)
    windows: int = 12  # (c): windows of clip_seconds on the long videos
    source_fps: int = 25
    workers: int = 2


SMOKE = Setup(long_videos=2, long_seconds=6.0, long_size=(160, 90), clips=3, clip_seconds=2.0,
              clip_size=(128, 72), windows=2)


# -- inputs ------------------------------------------------------------------------------------------
def write_video(path: Path, seconds: float, fps: int, size: tuple, seed: int) -> None:
    """Camera-like content: a smooth random texture panned slowly, a dark object moving across it, sensor
    noise; H.264 with x264's defaults (CRF 20): about 1.4 Mbit/s at 480p, as real recordings."""
    import av

    w, h = size
    rng = np.random.default_rng(seed)
    tex = _texture(rng, h + h // 2, w + w // 2)
    noise = [rng.integers(-6, 7, (h, w, 3), dtype=np.int16) for _ in range(7)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "20"}
        for i in range(round(seconds * fps)):
            t = i / fps
            x, y = int(w / 4 * (1 + np.sin(t / 7 + seed))), int(h / 4 * (1 + np.sin(t / 5 + 1 + seed)))
            img = tex[y:y + h, x:x + w].astype(np.int16) + noise[i % len(noise)]
            cx, cy = int(w / 2 + w / 3 * np.sin(t * 1.3)), int(h / 2 + h / 3 * np.cos(t * 0.9))
            img[max(0, cy - h // 16):cy + h // 16, max(0, cx - w // 7):cx + w // 7] = 40
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts = i
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


def _texture(rng, h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w, 3), np.float32)
    for scale, amp in ((64, 90), (16, 40), (4, 15)):
        small = rng.standard_normal((h // scale + 2, w // scale + 2, 3)).astype(np.float32)
        big = np.repeat(np.repeat(small, scale, 0), scale, 1)[:h, :w]
        k = max(1, scale // 2)  # a box blur smooths the blocks
        c = np.cumsum(np.cumsum(np.pad(big, ((k, k), (k, k), (0, 0)), mode="edge"), 0), 1)
        out += amp * (c[2 * k:, 2 * k:] - c[:-2 * k, 2 * k:] - c[2 * k:, :-2 * k] + c[:-2 * k, :-2 * k])[:h, :w] / (2 * k) ** 2
    return np.clip(out + 128, 0, 255).astype(np.uint8)


def make_inputs(work: Path, s: Setup) -> dict:
    """long/videos, clips/videos + clips.csv, windows/clips.csv (on the long videos), tiny/videos."""
    stamp = work / "setup.json"
    key = json.dumps({k: v for k, v in asdict(s).items() if k != "workers"})
    if not (stamp.is_file() and stamp.read_text() == key):
        shutil.rmtree(work, ignore_errors=True)
        jobs = [(work / "long" / "videos" / f"long{i}.mp4", s.long_seconds, s.long_size, i)
                for i in range(s.long_videos)]
        jobs += [(work / "clips" / "videos" / f"clip{i:03d}_000000_{int(s.clip_seconds):06d}.mp4", s.clip_seconds,
                  s.clip_size, 100 + i) for i in range(s.clips)]
        jobs.append((work / "tiny" / "videos" / "tiny.mp4", 1.0, s.long_size, 999))
        with ProcessPoolExecutor(s.workers) as pool:  # encoding is the slow part: one process per core
            list(pool.map(write_video, *zip(*[(p, sec, s.source_fps, size, seed) for p, sec, size, seed in jobs])))
        labels = ["abseiling", "bowling", "juggling", "skiing", "zumba"]
        rows = [f"{labels[i % 5]},clip{i:03d},0,{int(s.clip_seconds)},train" for i in range(s.clips)]
        (work / "clips" / "clips.csv").write_text("label,youtube_id,time_start,time_end,split\n" + "\n".join(rows))
        (work / "windows").mkdir()
        (work / "windows" / "videos").symlink_to(Path("..") / "long" / "videos")  # relative: the folder may move
        (work / "windows" / "clips.csv").write_text("label,youtube_id,time_start,time_end,split\n" + "\n".join(
            f"{labels[i % 5]},long{i % s.long_videos},{start:g},{start + s.clip_seconds:g},train"
            for i, start in enumerate(window_starts(s))))
        stamp.write_text(key)
    return {name: work / name for name in ("long", "clips", "windows", "tiny")}


def window_starts(s: Setup) -> list[float]:
    """Spread over the videos, none at a round second (windows rarely start on a keyframe)."""
    per_video = -(-s.windows // s.long_videos)
    span = s.long_seconds - s.clip_seconds - 1
    return [round(0.37 + span * (i // s.long_videos + 0.5) / per_video, 2) for i in range(s.windows)]


def videos_of(root: Path) -> list[Path]:
    return sorted((root / "videos").glob("*.mp4"))


def warm_page_cache(paths) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


# -- the two ways ------------------------------------------------------------------------------------
def ensure_ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("installing ffmpeg with apt-get", file=sys.stderr)
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "ffmpeg"], check=False, env=env,
                   stdout=subprocess.DEVNULL)
    if not shutil.which("ffmpeg"):
        raise SystemExit("bench.prep: ffmpeg is not installed and apt-get could not install it")
    return shutil.which("ffmpeg")


def run_ffmpeg(commands: list[list[str]], workers: int) -> float:
    """Wall seconds of the commands, `workers` at a time."""
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for done in pool.map(lambda cmd: subprocess.run(cmd, capture_output=True, text=True), commands):
            if done.returncode:
                raise RuntimeError(f"ffmpeg failed: {done.stderr[-500:]}")
    return time.perf_counter() - start


FFMPEG = ["ffmpeg", "-nostdin", "-loglevel", "error"]


def ffmpeg_videos(videos: list[Path], fps: float, out: Path, decoder: list[str]) -> list[list[str]]:
    """`decoder`: options before -i ([] for ffmpeg's defaults, ["-threads", "1"])."""
    cmds = []
    for v in videos:
        (out / v.stem).mkdir(parents=True)
        cmds.append([*FFMPEG, *decoder, "-i", str(v), "-vf", f"fps={fps:g},scale={SIZE}:{SIZE}",
                     str(out / v.stem / "%06d.jpg")])
    return cmds


def ffmpeg_windows(root: Path, s: Setup, out: Path, decoder: list[str]) -> list[list[str]]:
    cmds = []
    for i, start in enumerate(window_starts(s)):
        (out / f"w{i}").mkdir(parents=True)
        cmds.append([*FFMPEG, *decoder, "-ss", f"{start:g}", "-t", f"{s.clip_seconds:g}",
                     "-i", str(root / "videos" / f"long{i % s.long_videos}.mp4"), "-vf",
                     f"fps={s.clip_fps:g},scale={SIZE}:{SIZE}", str(out / f"w{i}" / "%06d.jpg")])
    return cmds


def run_vtprep(src: Path, work: Path, args: list[str], cache: Path, workers: int, rerun: bool = False,
               keep: str | None = None) -> dict:
    """A first `vt-prep prepare` on a fresh root holding (links to) src's inputs; optionally a rerun; the
    root is removed unless `keep` names a folder for it."""
    root = work / (keep or "vtprep")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for item in src.iterdir():
        (root / item.name).symlink_to(item.resolve())
    cmd = [sys.executable, "-m", "data_prep.cli", "prepare", "--root", str(root), "--size", str(SIZE), "--workers",
           str(workers), "--quiet", *args]
    env = {**os.environ, "VIDEOTRAIN_JIT_CACHE": str(cache), "PYTHONPATH": os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = {"s": _timed(cmd, env)}
    report = json.loads((root / "prep_report.json").read_text())
    result.update(frames=report["frames"], stage_s=report["stage_s"], write_s=report["write_s"])
    if rerun:
        result["rerun_s"] = _timed(cmd, env)
    if keep is None:
        shutil.rmtree(root)
    return result


def _timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"vt-prep failed ({done.returncode}): {done.stderr[-1500:]}")
    return time.perf_counter() - start


LOADER_START = """
import sys, time
start = time.perf_counter()
from framework.data.loader import SequenceLoader
next(iter(SequenceLoader(sys.argv[1], "train", 0, 1, 1, 1)))
print(time.perf_counter() - start)
"""


def loader_start(root: Path, cache: Path) -> float:
    """Seconds from the loader's import to its first batch in a new process (a training rank's start)."""
    env = {**os.environ, "VIDEOTRAIN_JIT_CACHE": str(cache), "PYTHONPATH": os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", LOADER_START, str(root)], cwd=REPO, env=env, capture_output=True,
                          text=True)
    if done.returncode:
        raise RuntimeError(f"loader start failed: {done.stderr[-1500:]}")
    return float(done.stdout.strip().splitlines()[-1])


# -- decoder threading -------------------------------------------------------------------------------
THREADING = [("SLICE", 1), ("SLICE", 2), ("FRAME", 2), ("AUTO", 2), ("FRAME", 3)]


def decode_rate(path: str, thread_type: str, threads: int, frames: int) -> float:
    import av

    start = time.perf_counter()
    with av.open(path) as c:
        stream = c.streams.video[0]
        stream.codec_context.thread_type, stream.codec_context.thread_count = thread_type, threads
        n = 0
        for _ in c.decode(stream):
            n += 1
            if n == frames:
                break
    return n / (time.perf_counter() - start)


def threading_study(video: Path, workers: int, frames: int, rounds: int) -> dict:
    """Decode-only frames/s per setting: one decoder alone, and `workers` decoders at once (summed)."""
    alone = {f"{t} {n}": [] for t, n in THREADING}
    together = {f"{t} {n}": [] for t, n in THREADING}
    with ProcessPoolExecutor(workers) as pool:
        for _ in range(rounds):
            for t, n in THREADING:
                alone[f"{t} {n}"].append(decode_rate(str(video), t, n, frames))
                together[f"{t} {n}"].append(sum(pool.map(decode_rate, *zip(*[(str(video), t, n, frames)] * workers))))
    ffmpeg = {}
    for threads in ("1", "0"):
        cmd = [*FFMPEG, "-threads", threads, "-i", str(video), "-frames:v", str(frames), "-f", "null", "-"]
        ffmpeg[f"ffmpeg -threads {threads}"] = frames / run_ffmpeg([cmd], 1)
    return {"alone": {k: statistics.median(v) for k, v in alone.items()},
            "together": {k: statistics.median(v) for k, v in together.items()}, "ffmpeg_alone": ffmpeg,
            "frames": frames}


# -- the benchmark -----------------------------------------------------------------------------------
def wait_for_quiet(max_load: float, wait_s: float) -> list[float]:
    """The machine is shared: wait (up to wait_s) for a quiet minute; returns the loads seen."""
    seen, deadline = [os.getloadavg()[0]], time.time() + wait_s
    while seen[-1] > max_load and time.time() < deadline:
        time.sleep(30)
        seen.append(os.getloadavg()[0])
    return seen


def bench(s: Setup, rounds: int, work: Path, max_load: float, wait_s: float) -> dict:
    ensure_ffmpeg()
    inputs = make_inputs(work, s)
    warm_page_cache([p for root in inputs.values() for p in videos_of(root)])
    waited = wait_for_quiet(max_load, wait_s)
    load = {"waited_for": waited, "before": os.getloadavg()[0]}
    scratch = work / "scratch"
    warm_cache = scratch / "jit-warm"
    long, clips, windows, tiny = (inputs[k] for k in ("long", "clips", "windows", "tiny"))
    cases = {  # vt-prep's arguments, and ffmpeg's commands given its decoder options
        "long": (long, ["--fps", f"{s.long_fps:g}"], lambda out, d: ffmpeg_videos(videos_of(long), s.long_fps, out, d)),
        "clips": (clips, ["--fps", f"{s.clip_fps:g}", "--clips", "clips.csv"],
                  lambda out, d: ffmpeg_videos(videos_of(clips), s.clip_fps, out, d)),
        "windows": (windows, ["--fps", f"{s.clip_fps:g}", "--clips", "clips.csv"],
                    lambda out, d: ffmpeg_windows(windows, s, out, d)),
        "tiny": (tiny, ["--fps", f"{s.long_fps:g}"], lambda out, d: ffmpeg_videos(videos_of(tiny), s.long_fps, out, d)),
    }
    ffmpegs = {"ffmpeg": [], "ffmpeg_1thread": ["-threads", "1"]}
    runs = {name: {"cold": [], "warm": [], **{k: [] for k in ffmpegs}} for name in cases}
    # fills the warm cache with what vt-prep compiles, and leaves a shard for the loader's start
    run_vtprep(tiny, scratch, cases["tiny"][1], warm_cache, s.workers, keep="loader-data")
    loader_start(scratch / "loader-data", warm_cache)  # and the loader's pipeline
    starts = {"cold": [], "warm": []}
    for _ in range(rounds):
        for name, (src, args, ffmpeg_cmds) in cases.items():  # interleaved: a burst of load hits every method
            cold = scratch / "jit-cold"  # empty for every cold run
            runs[name]["cold"].append(run_vtprep(src, scratch, args, cold, s.workers))
            shutil.rmtree(cold, ignore_errors=True)
            runs[name]["warm"].append(run_vtprep(src, scratch, args, warm_cache, s.workers, rerun=name == "long"))
            for method, decoder in ffmpegs.items():
                out = scratch / "ffmpeg"
                shutil.rmtree(out, ignore_errors=True)
                seconds = run_ffmpeg(ffmpeg_cmds(out, decoder), s.workers)
                runs[name][method].append({"s": seconds, "frames": sum(1 for _ in out.rglob("*.jpg"))})
        starts["cold"].append(loader_start(scratch / "loader-data", scratch / "jit-cold"))
        shutil.rmtree(scratch / "jit-cold")
        starts["warm"].append(loader_start(scratch / "loader-data", warm_cache))
    load["after_runs"] = os.getloadavg()[0]
    study = threading_study(videos_of(inputs["long"])[0], s.workers, min(1500, int(s.long_seconds * s.source_fps)),
                            rounds)
    load["after"] = os.getloadavg()[0]
    shutil.rmtree(scratch, ignore_errors=True)
    return {"setup": asdict(s), "rounds": rounds, "load_average": load, "cores": len(os.sched_getaffinity(0)),
            "runs": runs, "summary": summarise(runs, s), "threading": study,
            "loader_start_s": {k: statistics.median(v) for k, v in starts.items()}, "loader_start_runs": starts,
            "input_mb": {k: sum(p.stat().st_size for p in videos_of(v)) / 1e6 for k, v in inputs.items()},
            "versions": versions()}


def summarise(runs: dict, s: Setup) -> dict:
    out = {}
    for name, methods in runs.items():
        row = {}
        for method, rs in methods.items():
            seconds = statistics.median(x["s"] for x in rs)
            row[method] = {"s": seconds, "frames": rs[0]["frames"], "frames_per_s": rs[0]["frames"] / seconds}
            if "rerun_s" in rs[0]:
                row[method]["rerun_s"] = statistics.median(x["rerun_s"] for x in rs)
        row["warm/ffmpeg"] = row["warm"]["frames_per_s"] / row["ffmpeg"]["frames_per_s"]
        row["cold/ffmpeg"] = row["cold"]["frames_per_s"] / row["ffmpeg"]["frames_per_s"]
        row["warm/ffmpeg_1thread"] = row["warm"]["frames_per_s"] / row["ffmpeg_1thread"]["frames_per_s"]
        out[name] = row
    return out


def versions() -> dict:
    import av

    first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[:1]
    return {"ffmpeg": first[0] if first else "?", "pyav": av.__version__,
            "pyav_libavcodec": ".".join(map(str, av.library_versions["libavcodec"]))}


def report(r: dict) -> str:
    from bench.report import machine

    s, m, load, t = r["setup"], r["summary"], r["load_average"], r["threading"]

    def row(label, name):
        x = m[name]

        def cell(method):
            return f"{x[method]['s']:.1f} s, {x[method]['frames_per_s']:.0f}"

        return (f"| {label} | {x['ffmpeg']['frames']} | {cell('ffmpeg')} | {cell('ffmpeg_1thread')} | {cell('cold')} | "
                f"{cell('warm')} | {x['cold/ffmpeg']:.2f} | **{x['warm/ffmpeg']:.2f}** | {x['warm/ffmpeg_1thread']:.2f} |")

    settings = "\n".join(f"| {k} | {t['alone'][k]:.0f} | {t['together'][k]:.0f} |" for k in t["alone"])
    ffmpeg_rates = ", ".join(f"`{k}` {v:.0f}" for k, v in t["ffmpeg_alone"].items())
    long_frames = s["long_videos"] * s["long_seconds"] * s["source_fps"]
    return f"""## Preparation throughput: vt-prep vs ffmpeg (`python -m bench.prep --out docs/BENCHMARKS.md`)
Machine: {machine()}; {r['cores']} cores usable, {s['workers']} processes at a time for both tools
(vt-prep `--workers {s['workers']}`, decoder threads by the rule workers × threads ≤ cores; ffmpeg: one process per video,
with its default threads (one per core, and more: frame threading), and with `-threads 1` before `-i`, the threads
vt-prep's rule gives here: on a shared machine a process with more threads takes a larger share of the cores). Outputs {SIZE}×{SIZE} JPEG: ffmpeg one file per frame, vt-prep FFCV shards + manifest.
Inputs made by PyAV/libx264 (x264 defaults, CRF 20, B-frames): (a) {s['long_videos']} videos of
{s['long_seconds'] / 60:g} min at {s['source_fps']} fps, {s['long_size'][0]}×{s['long_size'][1]}
({r['input_mb']['long']:.0f} MB), sampled at {s['long_fps']:g} fps; (b) {s['clips']} clips of {s['clip_seconds']:g} s,
{s['clip_size'][0]}×{s['clip_size'][1]}, at {s['clip_fps']:g} fps (`--clips`, trimmed clips); (c) {s['windows']}
windows of {s['clip_seconds']:g} s on the videos of (a), at {s['clip_fps']:g} fps (`--clips` rows on full videos: vt-prep
seeks to the keyframe before each; ffmpeg `-ss start -t {s['clip_seconds']:g}` before `-i`). Cold: an empty JIT cache
(the first run on a machine); warm: the compile cached. Median of {r['rounds']} interleaved rounds; page cache
warm. Load (1-min average, the machine is shared): {load['before']:.2f} at the start
(waited through {', '.join(f'{x:.1f}' for x in load['waited_for'])}), {load['after_runs']:.2f} after the runs,
{load['after']:.2f} at the end. {r['versions']['ffmpeg']}; PyAV {r['versions']['pyav']} (libavcodec
{r['versions']['pyav_libavcodec']}).

| input | frames out | ffmpeg: wall, frames/s | ffmpeg `-threads 1` | vt-prep cold | vt-prep warm | cold / ffmpeg | warm / ffmpeg (goal ≥ 0.9 on (a)) | warm / ffmpeg `-threads 1` |
|---|---|---|---|---|---|---|---|---|
{row("(a) long videos, 1 fps", "long")}
{row("(b) short clips, 10 fps", "clips")}
{row("(c) clip windows on long videos, 10 fps", "windows")}

Fixed start-up cost (a run on one 1-second video, {m['tiny']['warm']['frames']} frame): vt-prep
**{m['tiny']['cold']['s']:.1f} s cold, {m['tiny']['warm']['s']:.1f} s warm**; ffmpeg {m['tiny']['ffmpeg']['s']:.2f} s.
Training loader, import to first batch in a new process (each rank's start): **{r['loader_start_s']['cold']:.1f} s
cold, {r['loader_start_s']['warm']:.1f} s warm**. Rerun of (a) with nothing changed: {m['long']['warm']['rerun_s']:.1f} s (sizes and mtimes trusted, nothing hashed).
(a) decodes {long_frames:.0f} source frames: ffmpeg {long_frames / m['long']['ffmpeg']['s']:.0f} decoded frames/s,
vt-prep warm {long_frames / m['long']['warm']['s']:.0f}.

Decoder threading (PyAV, decode only, first {t['frames']} frames of an (a) video, decoded frames/s; "together":
{s['workers']} decoders at once, summed):

| thread_type, thread_count | alone | {s['workers']} at once |
|---|---|---|
{settings}

For reference, ffmpeg decode-only alone: {ffmpeg_rates}.
"""


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work", type=Path, default=REPO / "data" / "bench-prep")
    p.add_argument("--out", type=Path, default=None, help="write a section into this markdown file")
    p.add_argument("--max-load", type=float, default=1.5, help="wait for a 1-minute load average below this")
    p.add_argument("--wait-s", type=float, default=900, help="at most this long")
    p.add_argument("--smoke", action="store_true", help="tiny inputs, one round, nothing written")
    a = p.parse_args(argv)
    s = Setup(workers=a.workers)
    if a.smoke:
        s, a.rounds, a.out, a.wait_s = Setup(**{**asdict(SMOKE), "workers": a.workers}), 1, None, 0
        a.work = a.work.with_name(a.work.name + "-smoke")
    result = bench(s, a.rounds, a.work, a.max_load, a.wait_s)
    print(json.dumps(result, indent=1))
    if a.out:
        from bench.report import write_section

        write_section(a.out, "prep", report(result))
    return result


if __name__ == "__main__":
    main()
