"""What must not change when a run resumes, stored with each checkpoint and compared before a resume.

The fingerprint is the whole config, flattened to dotted keys, plus the number of processes and a digest of
the training split's videos, minus the keys that may change between the jobs of one run (EXEMPT, each with
its reason). Everything else either is overridden by the restored state without a word (the optimizer's
learning rate and weight decay come back with its state; the schedule's base rates with the schedule), or
breaks the restored state (other batch or sequence sizes, another number of processes or SP degree: the
loader positions and carried states belong to another plan), or makes it another run (the model, the data).

New config fields are part of the fingerprint unless exempted here; a key that one side does not have (a field
added since the checkpoint was written) is not compared.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

EXEMPT = {
    "name": "a label", "run_dir": "where the run is", "logging": "tracking only",
    "data.root": "the data may move", "data.eval_split": "evaluation only", "data.num_workers": "throughput only",
    "model.frame_chunk": "memory only (same results)", "model.checkpointing": "memory only (same gradients)",
    "trainer.max_steps": "a run is extended by raising it (the schedule then stretches to the new end)",
    "trainer.checkpoint_every": "when, not what", "trainer.log_every": "when, not what",
    "trainer.resume": "how to resume", "trainer.eval": "evaluation only",
    "trainer.nonfinite": "what to do when a step goes wrong", "trainer.nonfinite_patience": "the same",
    "deepspeed.shm_allreduce": "how gradients travel (bitwise the same sums)",
    "data.val_split": "validation only", "trainer.eval_every": "validation only",
    "trainer.best_metric": "which checkpoint is called best", "trainer.best_mode": "the same",
    "trainer.keep_last": "how many checkpoints stay on disk",
    "task.phase.offsets": "scoring only", "task.clip.views": "testing only", "task.clip.crops": "testing only",
    "task.clip.test_crop": "testing only", "task.clip.aggregation": "testing only",
}
# under trainer.resume=force: which differences still let each part of the state be restored
OPTIMIZER_LAYOUT = ("trainer.optimizer", "deepspeed.zero_stage", "deepspeed.bf16")
OPTIMIZER_HYPER = ("trainer.lr", "trainer.weight_decay", "trainer.warmup_steps", "deepspeed.grad_accum")
DATA_PLAN = ("seed", "world_size", "trainer.sp", "data.")  # "data." : every fingerprinted data key


def flat(obj, prefix: str = "") -> dict:
    if dataclasses.is_dataclass(obj):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def exempt(key: str) -> bool:
    return any(key == e or key.startswith(e + ".") for e in EXEMPT)


def fingerprint(cfg, world_size: int, train_videos) -> dict:
    """cfg: a Config; train_videos: the manifest's VideoEntry list of the training split."""
    out = {k: v for k, v in flat(cfg).items() if not exempt(k)}
    out["world_size"] = world_size
    videos = [[v.id, v.num_frames] for v in train_videos]
    out["data.train_videos"] = hashlib.sha256(json.dumps(videos).encode()).hexdigest()[:16]
    return json.loads(json.dumps(out))  # what the marker stores and gives back (tuples become lists)


def differences(old: dict, new: dict) -> list[str]:
    return sorted(k for k in old.keys() & new.keys() if old[k] != new[k])


def describe(keys: list[str], old: dict, new: dict) -> str:
    def show(k, v):
        return "(another set of videos)" if k == "data.train_videos" else repr(v)

    return ", ".join(f"{k} {show(k, old[k])} -> {show(k, new[k])}" for k in keys)


def in_group(key: str, group: tuple) -> bool:
    return any(key == g or (g.endswith(".") and key.startswith(g)) for g in group)
