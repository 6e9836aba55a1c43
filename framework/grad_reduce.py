"""How the engine's gradients are reduced after the backward, where DeepSpeed's own way wastes time.

DeepSpeed's ZeRO-0 reduction copies every gradient into one new flat buffer, all-reduces it and copies it
back. Two cases do better:

- One rank, ZeRO 0 in fp32: there is nothing to reduce (a sum over one rank, times 1/1), so nothing is
  done. Before, a single-process run paid two full copies of its gradients every step.
- CPU ranks on one machine: DeepSpeed ships a shared-memory all-reduce kernel (the one behind its CPU
  inference, `inference_all_reduce`); summing each gradient in place through it instead of flattening them
  through gloo (TCP on loopback) takes ≈0.05 s off a ≈0.5 s step of the demo model on 2 ranks
  (`python -m bench.relay_scaling` runs both). The sums are the same: every rank adds the ranks' values in
  rank order, so the replicas stay bitwise equal.

Everything else (GPUs, several machines, ZeRO 1/2) goes through DeepSpeed as before.

The shared-memory kernel is used (`deepspeed.shm_allreduce: true`, the default) when:
- the device is the CPU, there is more than one rank, and all ranks are on one machine;
- there is a core per rank: the kernel spin-waits for its peers, and spinning on a shared core starves
  the peer it waits for;
- ZeRO 0 in fp32: ZeRO 1/2 and bf16 reduce through their own optimizers;
- /dev/shm has room for ≈70 MB per rank. Docker's default is 64 MB in all; compose.yaml sets more.

The kernel's segments are named by DeepSpeed after the master address and port. Each rank unlinks its
own segment as soon as every peer has mapped it, so a killed run leaves nothing in /dev/shm.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

SEGMENT_BYTES = 70 * 2**20  # DeepSpeed's allreduce_workspace: 2 × 1 MiB + 2 × 32 MiB buffers, and flags
SHM = Path("/dev/shm")
_active = False  # set once this process's DeepSpeed comm backend has the kernel initialised
_unusable: str | None = None  # why prepare() did not set the kernel up, for the run's tags


def unusable(world: int, single_node: bool, cores: int, shm_free: int) -> str | None:
    """Why the kernel cannot serve this job (None: it can). Known before the process group starts."""
    if world < 2:
        return "one rank: nothing to reduce"
    if not single_node:
        return "ranks on several machines"
    if world > cores:
        return f"{world} ranks on {cores} cores (the kernel spin-waits)"
    if shm_free < world * SEGMENT_BYTES:
        return f"/dev/shm has {shm_free >> 20} MiB free, needs {world * SEGMENT_BYTES >> 20}"
    return None


def machine_unusable(world: int, single_node: bool) -> str | None:
    try:
        st = os.statvfs(SHM)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = 0
    return unusable(world, single_node, len(os.sched_getaffinity(0)), free)


def prepare(world: int, single_node: bool) -> bool:
    """Before deepspeed.init_distributed: DeepSpeed sets the kernel up only when LOCAL_SIZE says that all
    `world` ranks are local."""
    global _unusable
    _unusable = machine_unusable(world, single_node)
    if _unusable is not None:
        return False
    os.environ["LOCAL_SIZE"] = str(world)
    return True


def segment(rank: int) -> Path:
    e = os.environ
    return SHM / f"deepspeed_allreduce_buffer_{os.getuid()}_{e['MASTER_ADDR']}_{e['MASTER_PORT']}_{rank}"


def started() -> None:
    """After deepspeed.init_distributed: note whether the kernel is up, and drop this rank's segment name
    once every peer has mapped it (the mappings live on; the name would outlive a killed run)."""
    global _active
    import deepspeed.comm as dscomm
    import torch.distributed as dist

    backend = dscomm.comm.cdb
    _active = getattr(backend, "shm_comm_op", None) is not None and \
        getattr(backend, "shm_vector_kernel_level", 0) >= 1  # fp32 needs AVX2
    dist.barrier()
    segment(dist.get_rank()).unlink(missing_ok=True)


def config_unusable(ds_cfg) -> str | None:
    """Why the DeepSpeed config rules the kernel out (None: it does not). Asked before the process group
    starts, so that no segments are mapped for a run that cannot use them."""
    if not ds_cfg.shm_allreduce:
        return "shm_allreduce=false"
    if ds_cfg.zero_stage != 0:
        return f"ZeRO {ds_cfg.zero_stage} reduces through its own optimizer"
    if ds_cfg.bf16:
        return "bf16 reduces through its own optimizer"
    return None


def maybe_install(engine, ds_cfg) -> str:
    """Replace the engine's reduction where one of the cases above applies; returns which reduction the
    engine uses, for the run's tags."""
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        if ds_cfg.zero_stage != 0 or ds_cfg.bf16:
            return "deepspeed (one rank)"  # their optimizers do more than communicate in the reduction
        engine.allreduce_gradients = lambda bucket_size=None: None
        return "none (one rank)"
    backend = torch.distributed.get_backend()
    if backend != "gloo":  # GPUs: DeepSpeed's reduction over NCCL
        return f"deepspeed ({backend})"
    why_not = config_unusable(ds_cfg) or (None if _active else _unusable or "the shared-memory kernel did not start")
    if why_not is not None:
        return f"deepspeed ({why_not})"
    install(engine)
    return "shared memory"


def install(engine) -> None:
    """Replace the engine's ZeRO-0 gradient reduction (engine.backward calls it at accumulation
    boundaries, as before) with an in-place shared-memory sum of each gradient, averaged as DeepSpeed
    averages: the sum first, then × 1/world."""
    params = [p for p in engine.module.parameters() if p.requires_grad and p.numel()]
    world = torch.distributed.get_world_size()

    def allreduce_gradients(bucket_size=None):
        if not engine.is_gradient_accumulation_boundary():
            return
        for p in params:  # the same tensors in the same order on every rank: the kernel matches calls by order
            if p.grad is None:  # a parameter this rank's graph did not reach: its peers may have a gradient
                p.grad = torch.zeros_like(p)
            if p.grad.dtype == torch.float32:
                torch.ops.deepspeed.inference_all_reduce_(p.grad)
            else:  # the kernel would leave other dtypes untouched
                torch.distributed.all_reduce(p.grad)
            p.grad.mul_(1.0 / world)

    engine.allreduce_gradients = allreduce_gradients
