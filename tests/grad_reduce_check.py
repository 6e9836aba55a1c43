"""Run under torchrun with 1 or 2 CPU processes (see test_grad_reduce.py). Prints one JSON line on rank 0.

Two engines from the same seed: one reduces gradients as framework/grad_reduce.py arranges (2 ranks: the
shared-memory kernel; 1 rank: not at all), the other through DeepSpeed's own reduction over gloo. Every
rank feeds both the same rank-specific batch, then compares their reduced gradients and, after an optimizer
step, the weights (bitwise), and whether the replicas on the ranks agree (bitwise).
"""
from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist

from framework import grad_reduce
from framework.config import load_config
from framework.engine import build_engine
from framework.entry import entry_point
from framework.env import detect, init_distributed, shutdown
from framework.models import build_model


def engine(ours: bool):
    cfg, _ = load_config(["experiment=demo", "trainer.optimizer=sgd"])
    torch.manual_seed(0)
    eng = build_engine(build_model(cfg.model, 5), cfg)
    if not ours:  # DeepSpeed's own reduction: drop what grad_reduce put on the instance
        eng.__dict__.pop("allreduce_gradients", None)
        eng.grad_allreduce = "deepspeed"
    return eng


def train_step(eng, frames, labels) -> list[torch.Tensor]:
    logits, _ = eng.module(frames, eng.module.initial_state(frames.shape[0]), torch.ones(frames.shape[0], dtype=bool))
    eng.backward(torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten()))
    grads = [p.grad.clone() for p in eng.module.parameters() if p.requires_grad]
    eng.step()
    return grads


def flat_weights(eng) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in eng.module.parameters()])


def rank0(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    dist.broadcast(t, src=0)
    return t


@entry_point
def main() -> int:
    torch.set_num_threads(1)
    env = detect()
    init_distributed(env, shm_allreduce=True)
    dist.barrier()  # every rank past its unlink
    left = [str(grad_reduce.segment(r)) for r in range(env.world_size) if grad_reduce.segment(r).exists()]
    ours, theirs = engine(True), engine(False)
    gen = torch.Generator().manual_seed(100 + env.rank)  # each rank its own batch: the reduction must matter
    frames = torch.randint(0, 256, (2, 4, 64, 64, 3), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 5, (2, 4), generator=gen)
    g_ours, g_theirs = train_step(ours, frames, labels), train_step(theirs, frames, labels)
    grads, w = torch.cat([g.reshape(-1) for g in g_ours]), flat_weights(ours)
    result = {"paths": [ours.grad_allreduce, theirs.grad_allreduce], "segments_left": left,
              "grads_equal": all(torch.equal(a, b) for a, b in zip(g_ours, g_theirs)),
              "weights_equal": torch.equal(w, flat_weights(theirs)),
              # different batches on the ranks: equal gradients there mean they were reduced
              "grads_equal_across_ranks": torch.equal(grads, rank0(grads)),
              "replicas_equal": torch.equal(w, rank0(w))}
    results = [None] * env.world_size
    dist.all_gather_object(results, result)
    if env.is_main:
        print(json.dumps(results), flush=True)
    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
