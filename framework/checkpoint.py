"""Checkpoints in <run_dir>/checkpoints/<tag>/: DeepSpeed's files, one trainer-state file per rank, and a
completion marker.

A checkpoint is complete, or it is not used:
- every rank writes its files durably (fsync before the rename: framework/atomic.py) and then reports what it
  wrote in one collective, which is the barrier every rank reaches only once its files are on disk;
- rank 0 then writes `complete.json` (the files and their sizes, the step, the run's fingerprint) and only
  then the `latest` pointer, both atomically. DeepSpeed's own `latest` is not written (`save_latest=False`):
  its rank 0 writes it right after its own shard, while with ZeRO 1/2 another rank may still be writing.

`latest` is a convenience for people and tools; the truth is the markers: `resume=auto` takes the newest
complete checkpoint. The folder API (complete(), read_pointer(), write_pointer()) is what retention and a
`best` pointer build on.

Loading is safe: every file is read with `torch.load(weights_only=True)` (tensors and plain values only), the
trainer state because it is stored as tensors and plain types, DeepSpeed's files through a checkpoint engine
of ours that allows exactly the three DeepSpeed classes its optimizer states hold. A run folder from someone
else cannot run code here.
"""
from __future__ import annotations

import json
import pickle
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .atomic import write_atomic, write_json

MARKER = "complete.json"
LATEST = "latest"
BEST = "best"  # names the checkpoint of the best validation so far (trainer.best_metric)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, in one line."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path  # <run_dir>/checkpoints/<tag>
    step: int
    world_size: int
    fingerprint: dict = field(default_factory=dict)  # what must not change on resume (framework/fingerprint.py)

    @property
    def tag(self) -> str:
        return self.path.name

    @property
    def root(self) -> Path:
        return self.path.parent


def checkpoint_dir(run_dir) -> Path:
    return Path(run_dir) / "checkpoints"


def tag_for(step: int) -> str:
    return f"step{step:08d}"


# -- the folder ------------------------------------------------------------------------------
def read_complete(path: Path) -> Checkpoint | None:
    """The checkpoint in `path` if its marker is there and every file it lists has the size it lists."""
    path = Path(path)
    try:
        marker = json.loads((path / MARKER).read_text())
        files = marker["files"]
        if any((path / name).stat().st_size != size for name, size in files.items()):
            return None
        return Checkpoint(path, int(marker["step"]), int(marker["world_size"]), marker.get("fingerprint", {}))
    except (OSError, ValueError, KeyError, TypeError):  # no marker, unreadable, or a listed file gone
        return None


def tags(ckpt_dir: Path) -> list[Path]:
    """Every checkpoint folder, complete or not."""
    d = Path(ckpt_dir)
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def complete(ckpt_dir: Path) -> list[Checkpoint]:
    """The complete checkpoints, oldest first (what retention keeps or drops, what a `best` pointer names)."""
    found = [c for c in map(read_complete, tags(ckpt_dir)) if c is not None]
    return sorted(found, key=lambda c: c.step)


def read_pointer(ckpt_dir: Path, name: str = LATEST) -> str | None:
    """The tag a pointer file names; None if it is missing, empty or unreadable."""
    try:
        return (Path(ckpt_dir) / name).read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def write_pointer(ckpt_dir: Path, name: str, tag: str) -> None:
    write_atomic(Path(ckpt_dir) / name, lambda f: f.write(tag.encode()))


def prune(ckpt_dir: Path, keep_last: int) -> list[Path]:
    """trainer.keep_last: delete all but the newest `keep_last` complete checkpoints, and the incomplete folders
    older than the newest complete one (left by kills), but never a checkpoint `latest` or `best` names. Run by
    rank 0 once a save is complete on every rank. Returns the folders deleted."""
    import shutil

    d = Path(ckpt_dir)
    done = complete(d)
    if not done:
        return []
    keep = {c.tag for c in done[-keep_last:]} | {read_pointer(d, LATEST), read_pointer(d, BEST)}
    newest_step = done[-1].step
    doomed = [c.path for c in done if c.tag not in keep]
    doomed += [p for p in tags(d) if read_complete(p) is None and p.name not in keep and _step_of(p) < newest_step]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def _step_of(path: Path) -> int:
    m = re.fullmatch(r"step(\d+)", path.name)
    return int(m[1]) if m else -1


def newest(run_dir) -> Checkpoint | None:
    done = complete(checkpoint_dir(run_dir))
    return done[-1] if done else None


# -- which checkpoint a run resumes from -----------------------------------------------------------
def parse_resume(resume: str) -> tuple[str, bool]:
    """`auto` | `none` | `force` | PATH | `force:PATH` -> (auto/none/PATH, force)."""
    if resume == "force":
        return "auto", True
    if resume.startswith("force:"):
        return resume[len("force:"):], True
    return resume, False


def resolve_resume(resume: str, run_dir, warn: bool = True) -> Checkpoint | None:
    """`auto` (and `force`): the newest complete checkpoint of this run folder, None if it has none;
    `none`: None; a path: that checkpoint folder, which must be complete. Raises CheckpointError."""
    where, _ = parse_resume(resume)
    if where == "none":
        return None
    if where == "auto":
        return _newest_complete(checkpoint_dir(run_dir), warn)
    path = Path(where)
    if not path.is_dir():
        raise CheckpointError(f"trainer.resume={where}: no such checkpoint folder")
    found = read_complete(path)
    if found is None:
        raise CheckpointError(f"trainer.resume={where}: not a complete checkpoint ({why_incomplete(path)})")
    return found


def _newest_complete(d: Path, warn: bool) -> Checkpoint | None:
    folders = tags(d)
    if not folders:
        return None
    done = complete(d)
    if not done:
        raise CheckpointError(f"{d} holds {len(folders)} checkpoint folder(s) but none is complete (each was "
                              "cut short before its complete.json): start afresh with trainer.resume=none, or "
                              "another run_dir")
    pointer, reasons = read_pointer(d), []
    if pointer is None:
        reasons.append(f"{d / LATEST} is missing, empty or unreadable")
    elif not (d / pointer).is_dir():
        reasons.append(f"{d / LATEST} names {pointer!r}, which does not exist")
    newer = [p.name for p in folders if p.name > done[-1].tag]  # zero-padded steps: names sort as steps do
    if newer:
        reasons.append(f"{', '.join(newer)} {'is' if len(newer) == 1 else 'are'} incomplete (cut short)")
    if warn and reasons:
        print(f"warning: {'; '.join(reasons)}; resuming from the newest complete checkpoint, {done[-1].tag}",
              file=sys.stderr, flush=True)
    return done[-1]


def why_incomplete(path: Path) -> str:
    try:
        files = json.loads((path / MARKER).read_text())["files"]
    except FileNotFoundError:
        return f"no {MARKER}: it was cut short, or is not a checkpoint folder"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MARKER} is unreadable"
    bad = [n for n, size in files.items() if not (path / n).is_file() or (path / n).stat().st_size != size]
    return f"{', '.join(bad[:3])} missing or truncated"


# -- saving ----------------------------------------------------------------------------------------
def save(engine, run_dir, step: int, rank: int, rank_state: dict, shared: dict, fingerprint: dict,
         best: bool = False) -> Path:
    """Every rank calls this together. Returns the checkpoint folder, complete when this returns. best: the
    `best` pointer names it too (written before `latest`, so a kill between them cannot lose a best)."""
    import torch.distributed as dist

    refuse_nonfinite_weights(engine.module, step)
    d, tag = checkpoint_dir(run_dir), tag_for(step)
    path = d / tag
    if rank == 0:  # a folder re-written (same step again) is incomplete until its new marker
        (path / MARKER).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    files = safe_engine(engine)
    files.written.clear()
    state_file = path / f"trainer_state_rank{rank}.pt"
    write_atomic(state_file, lambda f: torch.save(rank_state, f))
    engine.save_checkpoint(str(d), tag=tag, client_state=shared, save_latest=False)
    mine = {str(Path(p).relative_to(path)): Path(p).stat().st_size for p in [state_file, *files.written]}
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)  # the barrier: every rank's files are on disk
    if rank == 0:
        listed = {name: size for part in everyone for name, size in part.items()}
        write_json(path / MARKER, {"step": step, "world_size": dist.get_world_size(), "files": listed,
                                   "fingerprint": fingerprint})
        if best:
            write_pointer(d, BEST, tag)
        write_pointer(d, LATEST, tag)
    dist.barrier()  # no rank leaves (to exit, or to requeue) before the checkpoint is complete
    return path


def refuse_nonfinite_weights(module: torch.nn.Module, step: int) -> None:
    """A checkpoint with non-finite weights is never written (one check per checkpoint, not per step)."""
    bad = [n for n, p in module.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        from .nonfinite import NonFiniteStop

        raise NonFiniteStop(f"the weights are not finite at step {step} ({bad[0]}"
                            f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}): no checkpoint written; "
                            "the last complete one is kept")


# -- loading ---------------------------------------------------------------------------------------
def load_engine(engine, ckpt: Checkpoint, optimizer: bool = True, scheduler: bool = True) -> dict:
    """DeepSpeed's part: weights, and optimizer and LR schedule states unless told otherwise. Returns the
    client state (the trainer's shared counters)."""
    safe_engine(engine)
    _, shared = engine.load_checkpoint(str(ckpt.root), tag=ckpt.tag, load_optimizer_states=optimizer,
                                       load_lr_scheduler_states=scheduler, load_module_only=not optimizer)
    return shared or {}


def load_weights(engine, ckpt: Checkpoint) -> None:
    safe_engine(engine)
    engine.load_checkpoint(str(ckpt.root), tag=ckpt.tag, load_module_only=True, load_optimizer_states=False,
                           load_lr_scheduler_states=False)


def load_rank_state(ckpt: Checkpoint, rank: int) -> dict:
    f = ckpt.path / f"trainer_state_rank{rank}.pt"
    if not f.is_file():
        raise CheckpointError(f"{f} is missing: was this checkpoint written by a run with a different number "
                              "of processes?")
    return safe_load(f, map_location="cpu")


def deepspeed_globals() -> list:
    """The only non-tensor classes in DeepSpeed's checkpoint files (found by loading ZeRO 0/1/2, fp32 and bf16
    checkpoints with weights_only=True): the loss scaler object, the ZeRO stage enum, and the named tuple of
    a parameter fragment's address."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, ZeroStageEnum, fragment_address]


def safe_load(path, map_location=None):
    try:
        with torch.serialization.safe_globals(deepspeed_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        what = f"a pickled {found[1]}" if found else "a pickled object"
        raise CheckpointError(f"{path} holds {what}, not only tensors and plain values: refused (loading it "
                              "could run code)") from None


class SafeEngineMixin:
    """DeepSpeed's torch checkpoint engine with weights_only loading and durable saves that it remembers
    (the files each rank lists in the completion marker)."""

    def save(self, state_dict, path: str):
        write_atomic(Path(path), lambda f: torch.save(state_dict, f,
                                                      _use_new_zipfile_serialization=self.zipfile_serialization))
        self.written.append(path)

    def load(self, path: str, map_location=None):
        return safe_load(path, map_location)


def safe_engine(engine):
    """Put our checkpoint engine on a DeepSpeed engine (once); returns it."""
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    current = engine.checkpoint_engine
    if isinstance(current, SafeEngineMixin):
        return current
    if type(current) is not TorchCheckpointEngine:  # a decoupled/fast/datastates writer: not configured by us
        raise CheckpointError(f"DeepSpeed checkpoint engine {type(current).__name__} is not supported")

    class SafeCheckpointEngine(SafeEngineMixin, TorchCheckpointEngine):
        pass

    safe = SafeCheckpointEngine.__new__(SafeCheckpointEngine)
    safe.__dict__.update(current.__dict__)  # its settings (serialization), without a second init log line
    safe.written = []
    engine.checkpoint_engine = safe
    return safe


# -- RNG states as tensors and plain types (weights_only loads them) ------------------------------
def rng_state() -> dict:
    version, keys, gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {"python": torch.tensor(keys, dtype=torch.int64), "python_version": version, "python_gauss": gauss,
             "numpy": torch.from_numpy(np_keys.astype(np.int64)), "numpy_pos": int(np_pos),
             "numpy_has_gauss": int(np_has_gauss), "numpy_gauss": float(np_gauss), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
