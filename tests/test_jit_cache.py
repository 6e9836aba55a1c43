"""FFCV's numba code is compiled once per machine: a second process loads it from the on-disk cache
(framework/data/jit_cache.py). The time saved is measured in bench/prep.py, not here."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prep_media import write_phases, write_video

REPO = Path(__file__).resolve().parents[1]

# One process as a training rank starts: import, a loader per FFCV code path (one reader thread; two, which
# compiles the image decoder with parallel=True; the centre-crop decoder of --short-side shards), a batch.
CHILD = """
import hashlib, json, sys
from numba.core import event

compiled = []

class Count(event.Listener):  # numba:compile fires only for a real compile, not for a load from the cache
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)

    def on_end(self, ev):
        pass

event.register("numba:compile", Count())
from framework.data.loader import SequenceLoader

frames = []
for root, workers in zip(sys.argv[1::2], sys.argv[2::2]):
    batch = next(iter(SequenceLoader(root, "train", 0, 1, 2, 8, num_workers=int(workers), shuffle=False)))
    frames.append(hashlib.sha256(batch.frames.numpy().tobytes()).hexdigest())
print(json.dumps({"compiled": compiled, "frames": frames}))
"""


@pytest.fixture(scope="module")
def short_side_data(tmp_path_factory) -> Path:
    """Shards with frames of two sizes (--short-side on a landscape and a portrait video): the loader decodes
    them with FFCV's centre-crop decoder, which calls the C resize."""
    from data_prep.cli import main

    root = tmp_path_factory.mktemp("short_side")
    for vid, (w, h) in {"wide": (64, 48), "tall": (48, 64)}.items():
        write_video(root / "videos" / f"{vid}.mp4", 20, fps=25, width=w, height=h)
        write_phases(root / "annotations" / f"{vid}.txt", ["a"] * 20)
    assert main(["prepare", "--root", str(root), "--phases", "annotations/{id}.txt", "--quiet", "--short-side", "24",
                 "--fps", "25"]) == 0
    return root


def start(cache: Path, *loaders) -> dict:
    env = {**os.environ, "VIDEOTRAIN_JIT_CACHE": str(cache)}
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, loaders)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_starts_without_compiling(tiny_data, short_side_data, tmp_path):
    cache = tmp_path / "jit"
    loaders = (tiny_data, 1, tiny_data, 2, short_side_data, 1)
    cold = start(cache, *loaders)
    assert len(cold["compiled"]) > 10, "a fresh cache compiles (typed dict, readers, decoders)"
    assert {"_make_dict", "BasicDecoder.generate_code.<locals>.decoder",
            "SimpleRGBImageDecoder.generate_code.<locals>.decode"} <= set(cold["compiled"])
    assert list(cache.rglob("*.nbi")), "and writes numba's index files there"
    warm = start(cache, *loaders)
    assert warm["compiled"] == [], "the second process loads everything from the cache"
    assert warm["frames"] == cold["frames"], "and the cached code decodes the same frames"


def test_cache_folder_default_and_override(monkeypatch, tmp_path):
    from framework.data import jit_cache

    for name in ("VIDEOTRAIN_JIT_CACHE", "NUMBA_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert jit_cache.cache_dir() == tmp_path / ".cache" / "videotrain" / "numba"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jit_cache.cache_dir() == tmp_path / "xdg" / "videotrain" / "numba"
    monkeypatch.setenv("VIDEOTRAIN_JIT_CACHE", str(tmp_path / "mine"))
    assert jit_cache.cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("VIDEOTRAIN_JIT_CACHE", "off")
    assert jit_cache.cache_dir() is None and jit_cache.configure() is None
