"""Real media for the preparation tests, made with PyAV: videos whose frames say which frame they are, variable
frame rate, rotation metadata, audio-only files, and a zoo of broken files."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

PERIOD = 28  # distinct grey levels; frame i and i + PERIOD look the same


def level(i: int) -> int:
    """Grey level of frame i: 8 apart, far more than H.264 (crf 10) and JPEG change a flat frame."""
    return 16 + 8 * (i % PERIOD)


def frame_index(frame: np.ndarray) -> int:
    """Which frame this decoded frame is, modulo PERIOD, by its grey level."""
    return int(np.argmin([abs(float(frame.mean()) - level(i)) for i in range(PERIOD)]))


def write_video(path: Path, n: int, fps: float = 25.0, width: int = 64, height: int = 48, times=None,
                rotation: int | None = None, marker: bool = False, keyint: int | None = None,
                bframes: int = 0, texture: bool = False) -> Path:
    """n frames of uniform grey level(i); `times` (seconds) gives explicit presentation times (variable
    frame rate); `marker` paints a white block in the top-left corner to see rotation; `keyint`: a keyframe
    every so many frames (several GOPs), `bframes`: B-frames (presentation order differs from decoding
    order, so a keyframe's presentation time lies after its decoding time); `texture` adds a moving pattern
    (zero mean) so that frames reference each other as in real video."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tb = Fraction(1, 1000)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = tb  # exact pts, not rounded to 1/fps
        stream.options = {"crf": "10", "preset": "ultrafast" if not bframes else "veryfast", "bf": str(bframes)}
        params = [f"keyint={keyint}:min-keyint={keyint}:scenecut=0"] if keyint else []
        params += ["b-adapt=0"] if bframes else []  # B-frames even where x264 would choose P-frames
        if params:
            stream.options["x264-params"] = ":".join(params)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        pattern = np.random.default_rng(0).integers(-20, 21, (height, width, 3)) if texture else 0
        for i in range(n):
            img = np.full((height, width, 3), level(i), np.uint8)
            if texture:
                img = (img + np.roll(pattern, i, axis=1)).clip(0, 255).astype(np.uint8)
            if marker:
                img[: height // 4, : width // 4] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            t = times[i] if times is not None else i / fps
            frame.pts, frame.time_base = round(t / tb), tb
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio(path: Path, seconds: float = 1.0) -> Path:
    """An audio-only AAC file (no video stream)."""
    import av

    rate = 16000
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        samples = np.sin(np.linspace(0, 2 * np.pi * 440 * seconds, int(rate * seconds))).astype(np.float32)
        for start in range(0, len(samples), 1024):
            chunk = samples[start:start + 1024][None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def write_phases(path: Path, phases: list[str], step: int = 1) -> Path:
    from data_prep.annotations import write_phase_file

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_phase_file(path, phases, step)
    return Path(path)


def read_shard(path: Path) -> dict:
    """Every sample of a shard, read straight from the FFCV file (no Loader, no JIT): the scalar fields, and the
    stored image bytes with their height and width."""
    from framework.data import jit_cache

    jit_cache.enable()  # before this process's first ffcv import
    from ffcv.reader import Reader

    from framework.data.schema import FIELDS

    meta = Reader(str(path)).metadata
    data = np.fromfile(path, np.uint8)
    out = {name: np.asarray(meta[f"f{i}"]) for i, name in enumerate(FIELDS) if name != "image"}
    image = meta["f0"]
    out["image"] = [(int(m["height"]), int(m["width"]), data[int(m["data_ptr"]):int(m["data_ptr"]) + size])
                    for m, size in zip(image, _sizes(path, len(image)))]
    return out


def _sizes(path: Path, n: int) -> list[int]:
    from ffcv.reader import Reader

    table = Reader(str(path)).alloc_table
    sizes = {}
    for row in table:  # image is the only field with a payload, one allocation per sample
        sizes[int(row["sample_id"])] = int(row["size"])
    return [sizes[i] for i in range(n)]
