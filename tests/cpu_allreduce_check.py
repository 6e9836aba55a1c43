"""Run under torchrun with 2 CPU processes (see test_cpu_allreduce.py). Prints one JSON line on rank 0.

Two engines from the same seed: one reduces gradients through the shared-memory kernel
(framework/cpu_allreduce.py), the other through DeepSpeed's own gloo reduction. Every rank feeds both the
same rank-specific batch, then compares their reduced gradients and, after an optimizer step, the weights
(bitwise), and whether the replicas on the two ranks agree (bitwise).
"""
from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist

from framework import cpu_allreduce
from framework.config import load_config
from framework.engine import build_engine
from framework.env import detect, init_distributed, shutdown
from framework.models import build_model


def engine(shm: bool):
    cfg, _ = load_config(["experiment=demo", f"deepspeed.shm_allreduce={str(shm).lower()}", "trainer.optimizer=sgd"])
    torch.manual_seed(0)
    return build_engine(build_model(cfg.model, 5), cfg)


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


def main() -> int:
    torch.set_num_threads(1)
    env = detect()
    init_distributed(env, shm_allreduce=True)
    dist.barrier()  # every rank past its unlink
    left = [str(cpu_allreduce.segment(r)) for r in range(env.world_size) if cpu_allreduce.segment(r).exists()]
    shm, gloo = engine(True), engine(False)
    gen = torch.Generator().manual_seed(100 + env.rank)  # each rank its own batch: the reduction must matter
    frames = torch.randint(0, 256, (2, 4, 64, 64, 3), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 5, (2, 4), generator=gen)
    g_shm, g_gloo = train_step(shm, frames, labels), train_step(gloo, frames, labels)
    grads, w = torch.cat([g.reshape(-1) for g in g_shm]), flat_weights(shm)
    result = {"paths": [shm.grad_allreduce, gloo.grad_allreduce], "segments_left": left,
              "grads_equal": all(torch.equal(a, b) for a, b in zip(g_shm, g_gloo)),
              "weights_equal": torch.equal(w, flat_weights(gloo)),
              # different batches on the two ranks: equal gradients there mean they were reduced
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
