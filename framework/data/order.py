"""Sampling orders: whole-video streaming for stateful training, and random clips.

Each rank runs B *lanes*; a lane plays its videos back to back in chunks of T frames, and consecutive
batches continue the same videos, so a hidden state carried from one batch to the next is the state of the
same video.

Lanes are staggered: each lane's stream is rotated by a random number of chunks every epoch. Without it all
lanes start at frame 0 together and, since workflow videos share their phase order, every batch holds one
phase at a time and training oscillates instead of learning (measured on the synthetic demo: no learning at
all in 300 steps). A rotated lane starts mid-video with a reset state and ends with that video's beginning,
so every frame is still seen once per epoch. A chunk never straddles two videos: the tail of a video is padded (valid=False), so a state
reset is needed only at chunk starts. All ranks run the same number of steps (collectives must match);
lanes that run dry get all-padding chunks.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Chunk:
    video: int  # position in the split's video list; -1 for padding
    offset: int  # first frame of the chunk within the video
    length: int  # valid frames (<= T)
    last: bool  # the video ends in this chunk
    reset: bool  # the carried state must be zeroed before this chunk (video start, or a lane's first chunk)
    stride: int = 1  # frames of the video between two consecutive frames of the chunk (clips only)

    def frames(self, T: int):
        """Frame indices within the video; past `length` the last valid frame repeats (padding)."""
        return self.offset + self.stride * np.minimum(np.arange(T), max(self.length, 1) - 1)


PAD = Chunk(video=-1, offset=0, length=0, last=False, reset=True)


def video_chunks(video: int, num_frames: int, T: int) -> list[Chunk]:
    return [Chunk(video, o, min(T, num_frames - o), o + T >= num_frames, o == 0) for o in range(0, num_frames, T)]


def stagger(chunks: list[Chunk], shift: int) -> list[Chunk]:
    rotated = chunks[shift:] + chunks[:shift]
    return [replace(rotated[0], reset=True)] + rotated[1:] if rotated else rotated


def assign_lanes(lengths: list[int], num_lanes: int, T: int, order: list[int]) -> list[list[int]]:
    """Deal videos (in the given order) to the lane with the fewest chunks so far: balanced by frames."""
    lanes: list[list[int]] = [[] for _ in range(num_lanes)]
    load = [0] * num_lanes
    for v in order:
        i = min(range(num_lanes), key=lambda k: (load[k], k))
        lanes[i].append(v)
        load[i] += -(-lengths[v] // T)
    return lanes


def epoch_plan(lengths: list[int], world: int, batch_size: int, T: int, epoch: int, seed: int,
               shuffle: bool) -> list[list[list[Chunk]]]:
    """plan[rank][step] is that rank's batch: batch_size chunks. Ranks get disjoint videos.
    shuffle=False (evaluation) keeps the video order and does not stagger."""
    rng = np.random.default_rng([seed, epoch])
    if shuffle:
        # longest first balances lanes (and so ranks) well; the jitter still changes who gets what each epoch
        order = list(np.argsort(-np.asarray(lengths) * rng.uniform(0.85, 1.15, len(lengths)), kind="stable"))
        lanes = [list(rng.permutation(lane)) for lane in assign_lanes(lengths, world * batch_size, T, order)]
    else:
        lanes = assign_lanes(lengths, world * batch_size, T, list(range(len(lengths))))
    chunks = [[c for v in lane for c in video_chunks(v, lengths[v], T)] for lane in lanes]
    if shuffle:
        chunks = [stagger(c, int(rng.integers(len(c))) if c else 0) for c in chunks]
    steps = max(len(c) for c in chunks)
    chunks = [c + [PAD] * (steps - len(c)) for c in chunks]
    # lane r*B + b belongs to rank r
    return [[[chunks[r * batch_size + b][s] for b in range(batch_size)] for s in range(steps)]
            for r in range(world)]


def deal(chunks: list[Chunk], world: int, batch_size: int) -> list[list[list[Chunk]]]:
    """plan[rank][step][lane] from a flat list: consecutive groups of batch_size go to ranks in turn; the last
    step is padded so every rank runs the same number of steps."""
    per_step = world * batch_size
    chunks = chunks + [PAD] * (-len(chunks) % per_step)
    steps = len(chunks) // per_step
    return [[chunks[(s * world + r) * batch_size:(s * world + r + 1) * batch_size] for s in range(steps)]
            for r in range(world)]


def clip_plan(lengths: list[int], world: int, batch_size: int, T: int, stride: int, epoch: int,
              seed: int) -> list[list[list[Chunk]]]:
    """Random clips of T frames, `stride` frames apart. A video of n frames gives max(1, n // span) clips
    (span = the frames one clip covers) at random positions, so every frame is drawn about once per epoch
    and long videos weigh in proportion to their length; clips of all videos are shuffled together.
    A video shorter than a span gives one clip, padded (valid=False) past its end."""
    rng = np.random.default_rng([seed, epoch, 1])  # the trailing 1 keeps clip and stream draws apart
    span = (T - 1) * stride + 1
    clips = []
    for v, n in enumerate(lengths):
        for offset in rng.integers(0, max(n - span, 0) + 1, size=max(1, n // span)):
            length = min(T, -(-(n - offset) // stride))
            last = offset + (length - 1) * stride >= n - stride
            clips.append(Chunk(v, int(offset), length, bool(last), True, stride))
    return deal([clips[i] for i in rng.permutation(len(clips))], world, batch_size)


def view_plan(lengths: list[int], world: int, batch_size: int, T: int, stride: int,
              views: int) -> list[list[list[Chunk]]]:
    """Multi-view testing (PySlowFast's temporal views): `views` clips of T frames `stride` apart per video,
    clip i starting at frame ⌊(n − span) · i / views⌋ (span = the frames one clip covers; clip 0 starts at frame
    0 and the last one stops short of the end), videos in order. A video shorter than a span gives `views`
    copies of its one padded clip, so every video has the same number of views."""
    span = (T - 1) * stride + 1
    clips = []
    for v, n in enumerate(lengths):
        for i in range(views):
            offset = max(n - span, 0) * i // views
            length = min(T, -(-(n - offset) // stride))
            clips.append(Chunk(v, offset, length, offset + (length - 1) * stride >= n - stride, True, stride))
    return deal(clips, world, batch_size)
