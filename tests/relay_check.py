"""Run under torchrun: relay gradients == single-process gradients, through a real DeepSpeed engine.

    torchrun --standalone --nproc_per_node N tests/relay_check.py SP

For every head × handoff × ZeRO stage, two consecutive batches (the second starts from the carried state) go
through the relay and a DeepSpeed backward; each step's reduced gradient is read with safe_get_full_grad. The
reference is one process holding every sequence whole (exact handoff) or cut at the same chunk boundaries with
the state detached (truncated BPTT), evaluated at the same weights. handoff=gather: the localization head
(conv and local-attention pyramids) with the localization task's loss (label assignment over the whole
sequence, from per-frame targets gathered along time), and a causal head gathered; the reference holds each
sequence whole. Prints one JSON line per case on rank 0; exits 1 if any relative error exceeds the tolerance.
"""
import copy
import json
import os
import sys

import deepspeed
from deepspeed.utils import safe_get_full_grad
import torch
import torch.distributed as dist

from types import SimpleNamespace

from framework.config import Config, DataConfig, DeepSpeedConfig, ModelConfig
from framework.engine import ds_config
from framework.entry import entry_point
from framework.env import detect, init_distributed, shutdown
from framework.models import VideoModel
from framework.models.heads import HEADS as HEAD_CLASSES, detach_state
from framework.models.model import head_options
from framework.relay import Relay, Topology
from framework.tasks.phase import cross_entropy_sum

B, T, SIZE, CLASSES, FEATURES, TOL = 2, 4, 16, 3, 16, 1e-5
LOCALIZATION = {"levels": 3, "snippet_len": 2, "snippet_stride": 2, "attention_heads": 2}
HEADS = {"linear": {}, "lstm": {"layers": 2}, "gru": {"layers": 1}, "tcn": {"layers": 3, "stages": 2},
         "transformer": {"layers": 2, "window": 3, "attention_heads": 2},
         "actionformer": LOCALIZATION, "actionformer_attention": {**LOCALIZATION, "blocks": "attention", "window": 3}}
# (head, handoff, ZeRO stages): every causal head relayed at every stage; the gathered ones
CASES = [(h, m, (0, 1, 2)) for h in ("linear", "lstm", "gru", "tcn", "transformer") for m in ("exact", "detached")] + \
    [("actionformer", "gather", (0, 1, 2)), ("actionformer_attention", "gather", (0,)), ("lstm", "gather", (0,))]


def localization_task():
    """The localization task on two videos (one per lane) with segments; its loss is the one trained."""
    from framework.data.manifest import Manifest, VideoEntry
    from framework.tasks.base import TaskContext
    from framework.tasks.localization import LocalizationConfig, LocalizationTask

    videos = [VideoEntry(f"v{b}", "train", "s", 0, 64, 4.0, "v.mp4",
                         segments=[[0.25, 1.0, 1 + b % 2], [1.5, 3.0, 2 - b % 2]]) for b in range(B * 2)]
    ctx = TaskContext(None, Manifest(labels=["background", "a", "b"], videos=videos), videos,
                      ModelConfig(head="actionformer", hidden=8, **LOCALIZATION))
    return LocalizationTask(LocalizationConfig(), ctx), videos


def loc_rows(task, videos, frame: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The task's per-frame targets of lanes [N, t] (lane n plays video n)."""
    video = torch.arange(frame.shape[0])
    return task.targets(SimpleNamespace(video=video, frame=frame, valid=valid), videos)


def targets_of(head: str, task, videos, frame, valid, labels) -> torch.Tensor:
    """Per-frame targets of some lanes: the localization task's rows, or phase labels."""
    if head.startswith("actionformer"):
        return loc_rows(task, videos, frame, valid)
    return labels.masked_fill(~valid, -1)


def loss_of(head: str, task, outputs, target):
    """The loss sum of some lanes' outputs: the localization task's, or the phase cross-entropy."""
    return task.loss(outputs[:, :, None], target) if head.startswith("actionformer") else \
        cross_entropy_sum(outputs, target)


def batch_data(step: int, topo: Topology):
    """All sequences of all DP groups, whole: frames [DP·B, SP·T, H, W, 3], labels, valid (a padded tail)."""
    g = torch.Generator().manual_seed(100 + step)
    frames = torch.randint(0, 256, (topo.dp * B, topo.sp * T, SIZE, SIZE, 3), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, CLASSES, (topo.dp * B, topo.sp * T), generator=g)
    valid = torch.ones_like(labels, dtype=torch.bool)
    valid[0, -3:] = False  # a video that ends before the chunk does
    return frames, labels, valid


def reference_grads(model, frames, labels, valid, state, topo, handoff, reset, head, task, videos):
    """One process: DP groups' mean of each group's frame-mean loss; exact or chunk-truncated BPTT, or (gather)
    the head on every sequence whole."""
    feats = model.features(frames)
    if handoff == "gather":
        extra = {"valid": valid} if head.startswith("actionformer") else {}
        logits, state = model.head(feats, state, reset, **extra)
    else:
        outs = []
        for c in range(topo.sp):
            part = feats[:, c * T:(c + 1) * T]
            out, state = model.head(part, state, reset if c == 0 else torch.zeros_like(reset))
            state = detach_state(state) if handoff == "detached" else state
            outs.append(out)
        logits = torch.cat(outs, 1)
    frame = torch.arange(topo.sp * T).repeat(topo.dp * B, 1)
    rows = lambda g: slice(g * B, (g + 1) * B)  # noqa: E731
    loss = sum(loss_of(head, task, logits[rows(g)],
                       targets_of(head, task, videos[g * B:], frame[rows(g)], valid[rows(g)], labels[rows(g)]))
               / valid[rows(g)].sum() for g in range(topo.dp)) / topo.dp
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return grads, detach_state(state)


def sp_groups(topo: Topology):
    """This rank's SP process group (every rank must create every group, in the same order)."""
    from framework.relay import sp_group

    return None if topo.sp == 1 else sp_group(topo)


class TinyBackbone(torch.nn.Module):
    """uint8 frames [N, H, W, 3] -> features [N, D], as the ResNets do, with one conv and a GroupNorm: what the
    relay must get right (the state and its gradient between ranks, the features' gradient into the backbone,
    DeepSpeed's reduction of both) does not depend on the backbone's size, while a ResNet-18 made each of the
    30 engines a rank builds here cost seconds of flattening and partitioning at ZeRO 1/2."""

    def __init__(self, dim: int = FEATURES):
        super().__init__()
        self.conv, self.norm = torch.nn.Conv2d(3, dim, 3, stride=2), torch.nn.GroupNorm(4, dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float() / 255
        return torch.relu(self.norm(self.conv(x))).mean((2, 3))


def build(mcfg: ModelConfig, out_dim: int = CLASSES) -> VideoModel:
    head = HEAD_CLASSES[mcfg.head](FEATURES, out_dim, **head_options(mcfg))
    return VideoModel(TinyBackbone(), FEATURES, head)


def check(head: str, handoff: str, zero: int, topo: Topology, group) -> float:
    torch.manual_seed(0)
    mcfg = ModelConfig(backbone="resnet18", head=head.split("_")[0], hidden=8, **HEADS[head])
    task, videos = localization_task()
    model = build(mcfg, task.out_dim if head.startswith("actionformer") else CLASSES)
    reference = copy.deepcopy(model)
    cfg = Config(data=DataConfig(batch_size=B, seq_len=T), model=mcfg,
                 task={"localization": {}} if head.startswith("actionformer") else {},
                 deepspeed=DeepSpeedConfig(zero_stage=zero, grad_clip=0.0))
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                                      config=ds_config(cfg))
    relay = Relay(engine.module.head, topo, handoff)
    rows = slice(topo.dp_rank * B, (topo.dp_rank + 1) * B)
    cols = slice(topo.sp_rank * T, (topo.sp_rank + 1) * T)
    carried, ref_state = None, reference.initial_state(topo.dp * B)
    worst = 0.0
    for step in range(2):
        frames, labels, valid = batch_data(step, topo)
        reset = torch.full((B,), step == 0 and topo.sp_rank == 0)
        ref_reset = torch.full((topo.dp * B,), step == 0)
        reference.load_state_dict(engine.module.state_dict())
        ref, ref_state = reference_grads(reference, frames, labels, valid, ref_state, topo, handoff, ref_reset,
                                         head, task, videos)

        normaliser = valid[rows, cols].sum().float()
        if group is not None:
            dist.all_reduce(normaliser, group=group)
        feats = engine.module.features(frames[rows, cols])
        if handoff == "gather":  # this rank's per-frame targets, then the whole sequence's as the trainer gets them
            frame = torch.arange(topo.sp * T)[cols].repeat(B, 1)
            mine = targets_of(head, task, videos[topo.dp_rank * B:], frame, valid[rows, cols], labels[rows, cols])
            whole = relay.scored({"t": mine})["t"]
            result = relay.step(feats, carried, reset, lambda out: loss_of(head, task, out, whole) / normaliser,
                                valid=valid[rows, cols])
        else:
            local_target = labels.masked_fill(~valid, -1)[rows, cols]
            result = relay.step(feats, carried, reset,
                                lambda out: cross_entropy_sum(out, local_target) / normaliser)
        engine.backward(result.surrogate * relay.backward_scale)
        for p, r in zip(engine.module.parameters(), ref):
            g = safe_get_full_grad(p)  # the reduced gradient, whatever the ZeRO stage partitioned
            worst = max(worst, ((g - r).norm() / r.norm().clamp(min=1e-12)).item())
        engine.step()
        carried = result.carried
    engine.destroy()
    return worst


@entry_point
def main() -> int:
    torch.set_num_threads(1)
    env = detect()
    init_distributed(env)
    topo = Topology(env.rank, env.world_size, int(sys.argv[1]))
    group = sp_groups(topo)
    stages = [int(z) for z in os.environ.get("RELAY_ZERO", "0,1,2").split(",")]
    failed = False
    for head, handoff, zeros in CASES:
        for zero in [z for z in zeros if z in stages]:
            err = check(head, handoff, zero, topo, group)
            errs = [None] * topo.world
            dist.all_gather_object(errs, err)
            failed |= max(errs) > TOL
            if env.rank == 0:
                print(json.dumps({"head": head, "handoff": handoff, "zero": zero, "dp": topo.dp, "sp": topo.sp,
                                  "max_rel_err": max(errs)}), flush=True)
    shutdown()
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
