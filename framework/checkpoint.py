"""Checkpoints in <run_dir>/checkpoints/<tag>/: DeepSpeed's files plus one trainer-state file per rank.

DeepSpeed's client_state is written by rank 0 only, but RNG streams, the loader position and the carried
hidden states are per rank, so each rank writes its own file. They are written before DeepSpeed's
save_checkpoint, which updates `latest` last: a kill at any point leaves `latest` pointing at a complete
checkpoint.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch


def checkpoint_dir(run_dir) -> Path:
    return Path(run_dir) / "checkpoints"


def tag_for(step: int) -> str:
    return f"step{step:08d}"


def latest(ckpt_dir: Path) -> str | None:
    f = Path(ckpt_dir) / "latest"
    return f.read_text().strip() if f.is_file() else None


def resolve_resume(resume: str, run_dir) -> tuple[Path, str] | None:
    """`auto`: the latest checkpoint of this run folder, if any; `none`: start fresh; else a checkpoint
    folder `<...>/checkpoints/<tag>`."""
    if resume == "none":
        return None
    if resume == "auto":
        d = checkpoint_dir(run_dir)
        tag = latest(d)
        return (d, tag) if tag else None
    path = Path(resume)
    if not (path / "trainer_state_rank0.pt").is_file():
        raise FileNotFoundError(f"trainer.resume={resume}: not a checkpoint folder (no trainer_state_rank0.pt)")
    return path.parent, path.name


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(engine, run_dir, step: int, rank: int, rank_state: dict, shared: dict) -> Path:
    import torch.distributed as dist

    d = checkpoint_dir(run_dir)
    tag = tag_for(step)
    (d / tag).mkdir(parents=True, exist_ok=True)
    torch.save(rank_state, d / tag / f"trainer_state_rank{rank}.pt")
    dist.barrier()
    engine.save_checkpoint(str(d), tag=tag, client_state=shared)
    return d / tag


def load(engine, ckpt_dir: Path, tag: str, rank: int) -> tuple[dict, dict]:
    f = Path(ckpt_dir) / tag / f"trainer_state_rank{rank}.pt"
    if not f.is_file():
        raise FileNotFoundError(f"{f} is missing: was this checkpoint written by a run with a different "
                                "number of processes?")
    _, shared = engine.load_checkpoint(str(ckpt_dir), tag=tag)
    return torch.load(f, weights_only=False), shared
