"""Streaming (online) inference over whole videos: frames come in order, the head's state is carried from
chunk to chunk, no frame sees a later one. It knows no task: it collects each video's per-frame outputs
(the final stage of multi-stage heads) and the tasks score them (framework/tasks/)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .models.heads import detach_state
from .tasks import VideoResult, final_stage


def batch_statistics(model) -> None:
    """Trainable BatchNorm in train mode (each chunk normalised by its own statistics) and everything else in
    eval mode: the "cheating" evaluation of Rivoir et al. It lets a frame's output depend on the later frames
    of its chunk; never use it to report a number, only to show the leak."""
    from torch.nn.modules.batchnorm import _BatchNorm

    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.train()


@torch.no_grad()
def stream_outputs(model, loader, device, progress: bool = False,
                   bn_batch_stats: bool = False) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per split video index: (frame indices [N], outputs [N, C] float32), in order. bn_batch_stats: see
    `batch_statistics` (the running statistics move then; pass a copy of the model)."""
    was_training = model.training
    model.eval()
    if bn_batch_stats:
        batch_statistics(model)
    state = model.initial_state(loader.batch_size, device=device)
    parts: dict[int, list] = {}
    total = sum(c.length for step in loader.plan(loader.epoch) for c in step)
    bar = tqdm(total=total, desc="infer", unit="frame",
               disable=not progress, mininterval=0.2 if sys.stderr.isatty() else 30.0)
    s = getattr(model, "temporal_stride", 1)  # output steps of a 3D backbone: one per s frames, at its last
    for batch in loader:
        b = batch.to(device)
        outputs, state = model(b.frames, state, b.starts)
        state = detach_state(state)
        outputs = final_stage(outputs).float().cpu().numpy()
        frames, valid = batch.frame[:, s - 1::s], batch.valid[:, s - 1::s]
        for lane in range(loader.batch_size):
            v = int(batch.video[lane])
            if v >= 0:
                n = int(valid[lane].sum())
                parts.setdefault(v, []).append((frames[lane, :n].numpy(), outputs[lane, :n]))
        bar.update(int(batch.valid.sum()))
    bar.close()
    model.train(was_training)
    return {v: (np.concatenate([f for f, _ in p]), np.concatenate([o for _, o in p])) for v, p in parts.items()}


def gather(local: dict, merge_lists: bool = False) -> dict:
    """Every rank's videos on every rank: ranks stream disjoint videos; views of one video may lie on several
    ranks (merge_lists: their lists are concatenated, in rank order)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return local
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    if not merge_lists:
        return {k: v for p in parts for k, v in p.items()}
    out: dict = {}
    for p in parts:
        for k, v in p.items():
            out.setdefault(k, []).extend(v)
    return out


def infer(model, loader, device, progress: bool = False, bn_batch_stats: bool = False) -> list[VideoResult]:
    """Streaming inference over the loader's split, on every rank's share of its videos; the results of all
    videos, in split order, with each frame's time and label from the shards' metadata."""
    return _results(loader, gather(stream_outputs(model, loader, device, progress, bn_batch_stats)))


def _results(loader, raw: dict) -> list[VideoResult]:
    from .data.frame_info import frame_info

    videos = [loader.videos[v] for v in sorted(raw)]
    info = frame_info(loader.root, loader.manifest, videos)
    results = []
    for v, video in zip(sorted(raw), videos):
        frames, outputs = raw[v]
        i = info[video.id]
        results.append(VideoResult(video, frames, i.time[frames], i.label[frames], outputs))
    return results


@torch.no_grad()
def whole_video_outputs(model, loader, device, progress: bool = False) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For heads that see the whole sequence (not causal): each video's backbone features streamed chunk by
    chunk (memory bounded by a chunk), then the head once over the whole video. Per split video index:
    (frame indices [N], outputs [P, C] of the head, e.g. one row per pyramid point)."""
    was_training = model.training
    model.eval()
    s = getattr(model, "temporal_stride", 1)
    feats: dict[int, list] = {}
    total = sum(c.length for step in loader.plan(loader.epoch) for c in step)
    bar = tqdm(total=total, desc="features", unit="frame", disable=not progress,
               mininterval=0.2 if sys.stderr.isatty() else 30.0)
    for batch in loader:
        f = model.features(batch.frames.to(device))
        steps = batch.valid[:, ::s]  # a step is real where its first frame is
        for lane in range(loader.batch_size):
            v = int(batch.video[lane])
            if v >= 0:
                n = int(batch.valid[lane].sum())
                feats.setdefault(v, []).append((batch.frame[lane, :n].numpy(), f[lane, steps[lane].to(f.device)]))
        bar.update(int(batch.valid.sum()))
    bar.close()
    out = {}
    for v, parts in feats.items():
        whole = torch.cat([p for _, p in parts])[None]
        outputs, _ = model.head(whole, None, torch.ones(1, dtype=torch.bool, device=whole.device))
        out[v] = (np.concatenate([f for f, _ in parts]), final_stage(outputs)[0].float().cpu().numpy())
    model.train(was_training)
    return out


def infer_videos(model, loader, device, progress: bool = False) -> list[VideoResult]:
    """Whole-video inference (task sampling `videos`): one result per video, its frames' time and label from
    the shards' metadata, outputs as the head gives them over the whole video."""
    return _results(loader, gather(whole_video_outputs(model, loader, device, progress)))


def eval_loader(data_cfg, split: str, rank: int, world: int, tasks=None):
    """The evaluation order: whole videos streamed (not shuffled, not staggered), or, for tasks tested on
    views (clip classification), `views` evenly spaced clips per video."""
    from .data.loader import SequenceLoader

    d = data_cfg
    if tasks is not None and tasks.sampling == "views":
        return SequenceLoader(Path(d.root), split, rank, world, d.batch_size, d.seq_len, shuffle=False,
                              num_workers=d.num_workers, sampling="views", views=tasks.views, stride=d.clip_stride)
    return SequenceLoader(Path(d.root), split, rank, world, d.batch_size, d.seq_len, shuffle=False,
                          num_workers=d.num_workers)


def run_inference(model, loader, device, tasks, progress: bool = False, bn_batch_stats: bool = False):
    """The inference the tasks are scored on: streamed videos, multi-view clips, or whole videos (heads that
    see the whole sequence)."""
    if loader.sampling == "views":
        return infer_views(model, loader, device, tasks.crops, tasks.test_crop, progress)
    if tasks.sampling == "videos":
        return infer_videos(model, loader, device, progress)
    return infer(model, loader, device, progress, bn_batch_stats)


def spatial_crops(frames: torch.Tensor, crops: int, side: int | None) -> list[torch.Tensor]:
    """[B, T, H, W, 3] → `crops` views [B, T, s, s, 3]: the centre, or left/centre/right along the long side
    (top/middle/bottom for portrait frames), s = side or the short side (PySlowFast's 3-crop testing)."""
    H, W = frames.shape[2:4]
    s = min(side or min(H, W), H, W)
    y0, x0 = (H - s) // 2, (W - s) // 2
    if crops == 1:
        return [frames[:, :, y0:y0 + s, x0:x0 + s]]
    if W >= H:
        return [frames[:, :, y0:y0 + s, x:x + s] for x in (0, x0, W - s)]
    return [frames[:, :, y:y + s, x0:x0 + s] for y in (0, y0, H - s)]


@torch.no_grad()
def infer_views(model, loader, device, crops: int, side: int | None, progress: bool = False) -> list[VideoResult]:
    """Multi-view testing: every clip of the loader's view plan in `crops` spatial crops, each scored as the
    mean of the head's outputs over the clip's time steps (a clip is seen alone: its state starts at zero).
    One result per video: outputs [views · crops, C], frame = each view's first frame."""
    was_training = model.training
    model.eval()
    B = loader.batch_size
    reset = torch.ones(B, dtype=torch.bool, device=device)
    parts: dict[int, list] = {}
    for batch in tqdm(loader, desc="views", unit="batch", disable=not progress):
        b = batch.to(device)
        for crop in spatial_crops(b.frames, crops, side):
            outputs, _ = model(crop, model.initial_state(B, device=device), reset)
            scores = final_stage(outputs).float().mean(1).cpu().numpy()
            for lane in range(B):
                v = int(batch.video[lane])
                if v >= 0:
                    parts.setdefault(v, []).append((int(batch.frame[lane, 0]), int(batch.labels[lane, 0]),
                                                    scores[lane]))
    model.train(was_training)
    gathered = gather(parts, merge_lists=True)
    results = []
    for v in sorted(gathered):
        first, label, scores = zip(*gathered[v])
        video = loader.videos[v]
        frames = np.asarray(first)
        results.append(VideoResult(video, frames, frames / max(video.fps, 1e-9), np.asarray(label),
                                   np.stack(scores).astype(np.float32)))
    return results
