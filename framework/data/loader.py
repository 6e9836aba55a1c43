"""Sequence loader: batches of B sequences × T consecutive frames read from FFCV shards."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from .manifest import Manifest, ManifestError, check_shard
from .order import Chunk, epoch_plan
from .schema import reader_pipelines


@dataclass
class SequenceBatch:
    frames: torch.Tensor  # [B, T, H, W, 3] uint8
    labels: torch.Tensor  # [B, T] int64
    valid: torch.Tensor  # [B, T] bool; False on padding past a video's end
    starts: torch.Tensor  # [B] bool; zero the carried state before this sequence (a video, or a lane, starts)
    ends: torch.Tensor  # [B] bool; the video ends in this sequence
    video: torch.Tensor  # [B] int64 index into the split's videos (loader.videos), -1 for padding
    frame: torch.Tensor  # [B, T] int64 frame index within the video

    def to(self, device) -> "SequenceBatch":
        return SequenceBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


class SequenceLoader:
    """Whole-video streaming for one rank; `iter()` runs the rest of the current epoch.

    Its position (epoch, step) is all the state it has: the order of an epoch is a function of
    (seed, epoch), so restoring the position gives exactly the batch that would have come next."""

    def __init__(self, root: Path, split: str, rank: int, world: int, batch_size: int, seq_len: int,
                 seed: int = 0, shuffle: bool = True, num_workers: int = 1):
        self.root = Path(root)
        self.manifest = Manifest.load(self.root)
        self.videos = self.manifest.split(split)
        shard_names = {v.shard for v in self.videos}
        if len(shard_names) != 1:
            raise ManifestError(f"split {split!r} spans shards {sorted(shard_names)}; one shard per split is "
                                "supported")
        self.shard_path = check_shard(self.root, self.manifest.shard(shard_names.pop()))
        self.rank, self.world = rank, world
        self.batch_size, self.seq_len = batch_size, seq_len
        self.seed, self.shuffle, self.num_workers = seed, shuffle, num_workers
        self.epoch, self.step = 0, 0
        self._plans: dict[int, list[list[Chunk]]] = {}
        self._ffcv = None

    # -- order -------------------------------------------------------------------------------
    def plan(self, epoch: int) -> list[list[Chunk]]:
        if epoch not in self._plans:
            lengths = [v.num_frames for v in self.videos]
            self._plans = {epoch: epoch_plan(lengths, self.world, self.batch_size, self.seq_len, epoch,
                                             self.seed, self.shuffle)[self.rank]}
        return self._plans[epoch]

    def __len__(self) -> int:
        return len(self.plan(self.epoch))

    def _indices(self, chunk: Chunk) -> np.ndarray:
        if chunk.video < 0:
            return np.zeros(self.seq_len, np.int64)
        t = np.minimum(np.arange(self.seq_len), chunk.length - 1)  # pad by repeating the last frame
        return self.videos[chunk.video].start + chunk.offset + t

    # -- iteration ---------------------------------------------------------------------------
    def __iter__(self):
        steps = self.plan(self.epoch)[self.step:]
        if steps:
            order = np.concatenate([self._indices(c) for batch in steps for c in batch])
            for chunks, raw in zip(steps, self._read(order)):
                self.step += 1
                yield self._batch(chunks, raw)
        self.epoch, self.step = self.epoch + 1, 0

    def _read(self, order: np.ndarray):
        from ffcv.loader import Loader, OrderOption

        if self._ffcv is None:
            self._ffcv = Loader(str(self.shard_path), batch_size=self.batch_size * self.seq_len,
                                num_workers=self.num_workers, order=OrderOption.SEQUENTIAL, indices=order,
                                pipelines=reader_pipelines(), drop_last=False, os_cache=True)
        else:
            # FFCV 1.0.2 has no public way to change the order of an existing Loader; these three attributes
            # are all that Sequential order and len() read. Rebuilding instead would re-JIT the pipeline.
            self._ffcv.indices = order
            self._ffcv.traversal_order.indices = order
            self._ffcv.first_traversal_order = order
        it = iter(self._ffcv)
        try:
            yield from it
        finally:
            it.close()

    def _batch(self, chunks: list[Chunk], raw) -> SequenceBatch:
        B, T = self.batch_size, self.seq_len
        # FFCV reuses its output buffers a few batches later: copy everything out (`.long()` of an int64
        # tensor is not a copy)
        image, _, frame, _, label = (x.clone() for x in raw)
        lengths = torch.tensor([c.length for c in chunks])
        return SequenceBatch(
            frames=image.reshape(B, T, *image.shape[1:]),
            labels=label.reshape(B, T).long(),
            valid=torch.arange(T)[None, :] < lengths[:, None],
            starts=torch.tensor([c.reset for c in chunks]),
            ends=torch.tensor([c.last for c in chunks]),
            video=torch.tensor([c.video for c in chunks]),
            frame=frame.reshape(B, T).long(),
        )

    # -- resume ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
