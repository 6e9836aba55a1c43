"""The one place that knows ranks and the launch environment: torchrun, SLURM, or a single process.

A partial environment (say RANK without WORLD_SIZE) is an error, not a guess: silently training as rank 0
of 1 on each of 8 GPUs is the classic way to waste a night.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
SLURM_VARS = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_JOB_NODELIST")


class EnvironmentError_(RuntimeError):
    pass


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launcher: str  # torchrun | slurm | single
    single_node: bool = True  # every rank on this machine

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect(environ=os.environ) -> DistEnv:
    present = [v for v in TORCHRUN_VARS if v in environ]
    if present:
        missing = [v for v in TORCHRUN_VARS if v not in environ]
        if missing:
            raise EnvironmentError_(f"partial torchrun environment: {present} set but {missing} missing")
        world = int(environ["WORLD_SIZE"])
        return DistEnv(int(environ["RANK"]), world, int(environ["LOCAL_RANK"]), environ["MASTER_ADDR"],
                       int(environ["MASTER_PORT"]), "torchrun",
                       single_node=int(environ.get("LOCAL_WORLD_SIZE", 0)) == world)
    if "SLURM_PROCID" in environ and int(environ.get("SLURM_NTASKS", "1")) > 1:
        missing = [v for v in SLURM_VARS if v not in environ]
        if missing:
            raise EnvironmentError_(f"partial SLURM environment: {missing} missing")
        port = int(environ.get("MASTER_PORT", 20000 + int(environ.get("SLURM_JOB_ID", "0")) % 20000))
        return DistEnv(int(environ["SLURM_PROCID"]), int(environ["SLURM_NTASKS"]), int(environ["SLURM_LOCALID"]),
                       _first_host(environ["SLURM_JOB_NODELIST"]), port, "slurm",
                       single_node=environ.get("SLURM_JOB_NUM_NODES", environ.get("SLURM_NNODES")) == "1")
    return DistEnv(0, 1, 0, "127.0.0.1", free_port(), "single")


def _first_host(nodelist: str) -> str:
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             check=True).stdout
        return out.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return nodelist.split(",")[0]  # a plain single host name needs no expansion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_master(env: DistEnv) -> None:
    """The master address must resolve on every rank before the process group starts: a name that does not
    would make every rank retry its connection until the timeout (half an hour by default)."""
    if env.world_size == 1:
        return
    try:
        socket.getaddrinfo(env.master_addr, env.master_port, type=socket.SOCK_STREAM)
    except OSError as e:
        where = " (the first host of SLURM_JOB_NODELIST)" if env.launcher == "slurm" else ""
        raise EnvironmentError_(f"the master address {env.master_addr}{where} does not resolve on "
                                f"{socket.gethostname()}: {e.strerror or e}") from None


def import_deepspeed():
    """deepspeed, imported without MLflow: DeepSpeed's autotuner imports mlflow if it can (1.3 s of CPU on
    every rank, for an autotuner the framework does not use). Ranks that track import it themselves."""
    if "deepspeed" in sys.modules or "mlflow" in sys.modules:
        import deepspeed
        return deepspeed
    sys.modules["mlflow"] = None  # `import mlflow` raises ImportError while this stands
    try:
        import deepspeed
    finally:
        del sys.modules["mlflow"]
    return deepspeed


def init_distributed(env: DistEnv, shm_allreduce: bool = False, timeout_s: float | None = None) -> str:
    """Start the process group DeepSpeed will use: NCCL with GPUs, gloo on CPU. Returns the device.
    shm_allreduce: on CPU, also start DeepSpeed's shared-memory all-reduce where it can run (grad_reduce).
    timeout_s: how long a collective (and the rendezvous) waits for a peer before it fails; a rank that dies
    or hangs ends its peers' waits after at most this long (trainer.collective_timeout_s)."""
    from datetime import timedelta

    import torch

    deepspeed = import_deepspeed()

    from . import grad_reduce

    os.environ.update(RANK=str(env.rank), WORLD_SIZE=str(env.world_size), LOCAL_RANK=str(env.local_rank),
                      MASTER_ADDR=env.master_addr, MASTER_PORT=str(env.master_port))
    if torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank)
        backend, device = "nccl", f"cuda:{env.local_rank}"
    else:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        backend, device = "gloo", "cpu"
    if torch.distributed.is_initialized():
        return device
    check_master(env)
    shm = device == "cpu" and shm_allreduce and grad_reduce.prepare(env.world_size, env.single_node)
    timeout = {"timeout": timedelta(seconds=timeout_s)} if timeout_s else {}  # else DeepSpeed's (30 min)
    deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False, **timeout)
    if shm:
        grad_reduce.started()
    return device


def shutdown() -> None:
    """Leave together and take the process group down before the interpreter's shutdown does it: a rank
    exiting while its peers still hold open connections can abort ("terminate called without an active
    exception", seen here in 2-rank jobs before every entry point called this)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
