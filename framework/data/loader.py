"""Sequence loader: batches of B sequences × T frames read from the FFCV shards of one split.

Reading several shards: one FFCV Loader per shard, each fed the frames of that shard's chunks in plan order,
one FFCV batch per chunk (T frames); the loader takes each lane's next chunk from its shard's stream and
stacks the lanes into the batch. FFCV reads one file per Loader, and a video lies entirely in one shard, so
a chunk never needs two files. The cost is one pipeline JIT per shard (≈1 s on first use, measured) and
one prefetch thread per shard in use; keep shards large (GBs) so their number stays small.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import jit_cache
from .manifest import Manifest, ManifestError, check_shard
from .order import Chunk, clip_plan, epoch_plan, view_plan
from .schema import reader_pipelines

SAMPLING = ("stream", "clips", "views")


@dataclass
class SequenceBatch:
    frames: torch.Tensor  # [B, T, H, W, 3] uint8
    labels: torch.Tensor  # [B, T] int64
    valid: torch.Tensor  # [B, T] bool; False on padding past a video's end
    starts: torch.Tensor  # [B] bool; zero the carried state before this sequence (a video, or a lane, starts)
    ends: torch.Tensor  # [B] bool; the video ends in this sequence
    video: torch.Tensor  # [B] int64 index into the split's videos (loader.videos), -1 for padding
    frame: torch.Tensor  # [B, T] int64 frame index within the video
    # [B] int64 seed of each lane's augmentation; it changes only where `starts` is set, so a streamed
    # video keeps one crop/flip/colour across its chunks (see framework/data/augment.py)
    aug_seed: Optional[torch.Tensor] = None
    # [B] int64 valid frames of each lane's whole chunk; more than valid.sum(1) when this is one
    # sequence-parallel rank's part of it (the loss is normalised by the whole group's frames)
    lengths: Optional[torch.Tensor] = None

    def to(self, device) -> "SequenceBatch":
        return SequenceBatch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                                for f in fields(self)})


def frame_shape(shard_paths: list[Path]) -> tuple[tuple, int | None]:
    """The (H, W, 3) of the frames a batch holds, and the square side to crop to (None: no crop needed).
    Shards made with --short-side hold frames of several sizes when the videos' aspect ratios differ; then
    every frame is decoded as the centred square of its short side, at the smallest short side."""
    jit_cache.enable()  # before the first ffcv import of the process: the import itself compiles
    from ffcv.reader import Reader

    sizes = set()
    for path in shard_paths:  # f0: the image field (schema.FIELDS[0]); one row per frame
        meta = Reader(str(path)).metadata["f0"]
        sizes |= set(zip(meta["height"].tolist(), meta["width"].tolist()))
    if len(sizes) <= 1:  # none: an empty split, no frames to hold
        h, w = sizes.pop() if sizes else (0, 0)
        return (h, w, 3), None
    side = min(min(hw) for hw in sizes)
    return (side, side, 3), side


class SequenceLoader:
    """One rank's batches; `iter()` runs the rest of the current epoch.

    sampling="stream": whole videos played back to back in lanes (stateful training, evaluation);
    sampling="clips": random clips of seq_len frames, `stride` frames apart (clip models, augmentation);
    sampling="views": `views` evenly spaced clips per video, in order (multi-view testing).
    part=(k, n): sequence parallelism. The plan is the one of seq_len-frame chunks, and this loader reads
    and returns only the k-th of n equal parts of every chunk (the ranks of an SP group read the parts of
    the same chunks); only part 0 resets the state, and a video ends in the part holding its last frame.
    os_cache=True lets the OS page cache hold the shards (shared by all processes of a node);
    False makes each process cache the pages it reads itself (FFCV's process cache).

    Its position (epoch, step) is all the state it has: the order of an epoch is a function of
    (seed, epoch), so restoring the position gives exactly the batch that would have come next."""

    def __init__(self, root: Path, split: str, rank: int, world: int, batch_size: int, seq_len: int,
                 seed: int = 0, shuffle: bool = True, num_workers: int = 1, *, sampling: str = "stream",
                 stride: int = 1, os_cache: bool = True, part: tuple[int, int] = (0, 1), views: int = 1):
        if sampling not in SAMPLING:
            raise ValueError(f"sampling={sampling!r}: choose one of {SAMPLING}")
        if stride < 1 or (stride > 1 and sampling == "stream"):
            raise ValueError(f"stride={stride}: must be >= 1, and > 1 only with sampling='clips' or 'views'")
        self.root = Path(root)
        self.manifest = Manifest.load(self.root)
        self.videos = self.manifest.split(split)
        self.shard_names = sorted({v.shard for v in self.videos})
        self.shard_paths = [check_shard(self.root, self.manifest.shard(n)) for n in self.shard_names]
        self._shard_of = np.array([self.shard_names.index(v.shard) for v in self.videos])
        self._check_shards_cover_videos()
        self.frame_shape, self._square = frame_shape(self.shard_paths)
        self.rank, self.world = rank, world
        self.batch_size, self.seq_len = batch_size, seq_len
        self.seed, self.shuffle, self.num_workers = seed, shuffle, num_workers
        self.sampling, self.stride, self.os_cache, self.views = sampling, stride, os_cache, views
        self.part, self.parts = part  # read only frames [part·L, (part+1)·L) of each chunk, L = seq_len / parts
        if not 0 <= self.part < self.parts or seq_len % self.parts:
            raise ValueError(f"part={part}: need 0 <= part < parts and seq_len={seq_len} divisible by parts")
        self.epoch, self.step = 0, 0
        self._plans: dict[int, list[list[Chunk]]] = {}
        self._begun: tuple = (None, None)  # (epoch, [step, lane] -> step where the lane's sequence began)
        self._ffcv: dict[int, object] = {}  # shard position -> FFCV Loader, built on first use (JIT)

    def _check_shards_cover_videos(self) -> None:
        for v in self.videos:
            n = self.manifest.shard(v.shard).num_samples
            if v.start < 0 or v.start + v.num_frames > n:
                raise ManifestError(f"video {v.id}: frames {v.start}..{v.start + v.num_frames - 1} lie outside "
                                    f"shard {v.shard} ({n} samples); rebuild the shards with `vt-prep shards`")

    # -- order -------------------------------------------------------------------------------
    def plan(self, epoch: int) -> list[list[Chunk]]:
        if epoch not in self._plans:
            lengths = [v.num_frames for v in self.videos]
            if self.sampling == "clips":
                plans = clip_plan(lengths, self.world, self.batch_size, self.seq_len, self.stride, epoch, self.seed)
            elif self.sampling == "views":
                plans = view_plan(lengths, self.world, self.batch_size, self.seq_len, self.stride, self.views)
            else:
                plans = epoch_plan(lengths, self.world, self.batch_size, self.seq_len, epoch, self.seed,
                                   self.shuffle)
            self._plans = {epoch: plans[self.rank]}
        return self._plans[epoch]

    def __len__(self) -> int:
        return len(self.plan(self.epoch))

    def aug_seeds(self, epoch: int, step: int) -> torch.Tensor:
        """Per lane: a seed drawn from (seed, epoch, rank, lane, the step where the lane's sequence began).
        A pure function of the position, so a resumed run augments exactly as the uninterrupted one."""
        if self._begun[0] != epoch:
            resets = np.array([[c.reset for c in chunks] for chunks in self.plan(epoch)], bool)
            resets = resets.reshape(-1, self.batch_size)
            steps = np.arange(len(resets))[:, None]
            self._begun = (epoch, np.maximum.accumulate(np.where(resets, steps, 0), axis=0))
        begun = self._begun[1][step]
        return torch.tensor([int(np.random.SeedSequence([self.seed, epoch, self.rank, lane, int(begun[lane])])
                                 .generate_state(1, np.uint64)[0] >> np.uint64(1))  # >> 1: fits int64
                             for lane in range(self.batch_size)], dtype=torch.int64)

    # -- iteration ---------------------------------------------------------------------------
    def __iter__(self):
        steps = self.plan(self.epoch)[self.step:]
        streams = self._streams(steps)
        try:
            for chunks in steps:
                batch = self._batch(chunks, streams)
                batch.aug_seed = self.aug_seeds(self.epoch, self.step)
                self.step += 1
                yield batch
        finally:
            for it in streams.values():
                it.close()
        self.epoch, self.step = self.epoch + 1, 0

    def _streams(self, steps: list[list[Chunk]]) -> dict:
        """Per shard in use: an iterator of FFCV batches, one per chunk of that shard, in plan order."""
        per_shard: dict[int, list[np.ndarray]] = {}
        for chunks in steps:
            for c in chunks:
                if c.video >= 0:
                    per_shard.setdefault(int(self._shard_of[c.video]), []).append(
                        self.videos[c.video].start + c.frames(self.seq_len)[self._window()])
        threads = torch.get_num_threads()
        streams = {k: iter(self._shard_loader(k, np.concatenate(idx))) for k, idx in per_shard.items()}
        # FFCV sets torch's intra-op threads of the calling thread to num_workers; give the trainer its own
        # setting back (with more threads than cores, copies and the model fight FFCV's decoder threads)
        torch.set_num_threads(threads)
        return streams

    def _window(self) -> slice:
        L = self.seq_len // self.parts
        return slice(self.part * L, (self.part + 1) * L)

    def _shard_loader(self, k: int, order: np.ndarray):
        from ffcv.loader import Loader, OrderOption

        if k not in self._ffcv:
            self._ffcv[k] = Loader(str(self.shard_paths[k]), batch_size=self.seq_len // self.parts,
                                   num_workers=self.num_workers,
                                   order=OrderOption.SEQUENTIAL, indices=order, pipelines=reader_pipelines(self._square),
                                   drop_last=False, os_cache=self.os_cache,
                                   # a FFCV batch is one lane's chunk: prefetch two whole steps, not 3 chunks
                                   batches_ahead=max(3, 2 * self.batch_size))
        else:
            # FFCV 1.0.2 has no public way to change the order of an existing Loader; these three attributes
            # are all that Sequential order and len() read. Rebuilding instead would re-JIT the pipeline.
            loader = self._ffcv[k]
            loader.indices = loader.traversal_order.indices = loader.first_traversal_order = order
        return self._ffcv[k]

    def _batch(self, chunks: list[Chunk], streams: dict) -> SequenceBatch:
        T, first = self.seq_len // self.parts, self._window().start
        # empty, not zeros: a memset of every frame costs as much as the copy
        frames = torch.empty((len(chunks), T, *self.frame_shape), dtype=torch.uint8)
        labels = torch.zeros((len(chunks), T), dtype=torch.int64)
        index = torch.zeros((len(chunks), T), dtype=torch.int64)
        for b, c in enumerate(chunks):
            if c.video < 0:  # padding reads nothing: zero frames, label 0, valid=False
                frames[b] = 0
                continue
            image, _, frame, _, label = next(streams[self._shard_of[c.video]])
            # copy out at once: FFCV refills its output buffers while we read the other lanes (numpy's copy:
            # one thread, no dispatch cost)
            np.copyto(frames[b].numpy(), image.numpy())
            index[b], labels[b] = frame.reshape(T), label.reshape(T)
        lengths = torch.tensor([c.length for c in chunks])
        return SequenceBatch(
            frames=frames,
            labels=labels,
            valid=first + torch.arange(T)[None, :] < lengths[:, None],
            starts=torch.tensor([c.reset and first == 0 for c in chunks]),
            ends=torch.tensor([c.last and first <= c.length - 1 < first + T for c in chunks]),
            video=torch.tensor([c.video for c in chunks]),
            frame=index,
            lengths=lengths,
        )

    # -- resume ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
