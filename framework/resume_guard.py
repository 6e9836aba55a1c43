"""Resume refuses a changed run; `trainer.resume=force` restores what still fits and says what it did.

plan() compares the checkpoint's fingerprint (framework/fingerprint.py) with the new job's. A difference is
refused in one line that lists the keys, before any rank starts (vt-launch and vt-train ask it first). Under
force:
- the weights are restored (if they fit the model) and the step count;
- the optimizer's state, if the optimizer, the ZeRO stage, bf16 and (at ZeRO 1/2, whose states are
  partitioned by rank) the number of processes are the same; the new learning rate and weight decay are put
  on it, so they take effect;
- the LR schedule is rebuilt from the new settings and set at the restored optimizer step;
- the loader positions and carried states if the data plan (every fingerprinted data key, seed, processes,
  SP) is the same, else training goes on from the start of an epoch with fresh states; the RNG states if the
  number of processes is the same.
Only `model.pretrained` can then differ without effect (the weights come from the checkpoint): config.yaml
keeps the checkpoint's value of it, so that the run's config says what took effect.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from . import checkpoint, fingerprint as fp
from .checkpoint import Checkpoint, CheckpointError

NO_EFFECT = ("model.pretrained",)


@dataclass
class Plan:
    ckpt: Checkpoint
    force: bool = False
    changed: list[str] = field(default_factory=list)
    old: dict = field(default_factory=dict)
    new: dict = field(default_factory=dict)

    @property
    def everything(self) -> bool:
        return not self.changed

    @property
    def optimizer(self) -> bool:
        world_matters = self.new.get("deepspeed.zero_stage", 0) > 0
        return not any(fp.in_group(k, fp.OPTIMIZER_LAYOUT) or (k == "world_size" and world_matters)
                       for k in self.changed)

    @property
    def schedule(self) -> bool:
        return not any(fp.in_group(k, fp.OPTIMIZER_LAYOUT + fp.OPTIMIZER_HYPER) for k in self.changed)

    @property
    def data(self) -> bool:
        return not any(fp.in_group(k, fp.DATA_PLAN) for k in self.changed)

    @property
    def rng(self) -> bool:
        return "world_size" not in self.changed

    def kept_values(self) -> dict:
        """Dotted keys whose new value had no effect -> the value that did (for config.yaml)."""
        return {k: self.old[k] for k in self.changed if k in NO_EFFECT}

    def summary(self, step: int, accum: int) -> str:
        head = f"resumed from {self.ckpt.path} at step {step}"
        if self.everything:
            return head
        parts = [("the optimizer state", self.optimizer, "it starts afresh"),
                 ("the LR schedule state", self.schedule, f"the new schedule, at optimizer step {step // accum}"),
                 ("the loader positions and carried states", self.data, "from the start of an epoch"),
                 ("the RNG states", self.rng, "as seeded")]
        restored = ["the weights and the step count"] + [name for name, ok, _ in parts if ok]
        fresh = [f"{name} ({instead})" for name, ok, instead in parts if not ok]
        return (f"{head} with trainer.resume=force, despite: {fp.describe(self.changed, self.old, self.new)}; "
                f"restored: {', '.join(restored)}; not restored: {', '.join(fresh) or 'nothing'}")


def plan(cfg, world_size: int, train_videos, warn: bool = False) -> Plan | None:
    """The checkpoint to resume from and what of it to restore; None to start afresh. Raises CheckpointError
    (one line) for a checkpoint that cannot be used or was made with other settings (unless force)."""
    _, force = checkpoint.parse_resume(cfg.trainer.resume)
    ckpt = checkpoint.resolve_resume(cfg.trainer.resume, cfg.run_path, warn=warn)
    if ckpt is None:
        return None
    new = fp.fingerprint(cfg, world_size, train_videos)
    changed = fp.differences(ckpt.fingerprint, new)
    if changed and not force:
        how = "trainer.resume=force" if cfg.trainer.resume == "auto" else f"trainer.resume=force:{ckpt.path}"
        raise CheckpointError(f"{ckpt.path} was made with other settings: "
                              f"{fp.describe(changed, ckpt.fingerprint, new)}; resuming would not apply them "
                              f"(or break the run): use another run_dir, or resume anyway with {how}")
    return Plan(ckpt, force, changed, ckpt.fingerprint, new)


def restore_engine(engine, p: Plan, accum: int) -> int:
    """DeepSpeed's part of the plan; returns the restored step."""
    if p.everything:
        return checkpoint.load_engine(engine, p.ckpt)["step"]
    groups = [{k: v for k, v in g.items() if k != "params"} for g in engine.optimizer.param_groups]
    try:
        shared = checkpoint.load_engine(engine, p.ckpt, optimizer=p.optimizer, scheduler=False)
    except RuntimeError as e:  # load_state_dict's report of keys and shapes that do not fit
        raise CheckpointError(f"{p.ckpt.path}: its weights do not fit this model "
                              f"({str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e})") from None
    for g, hyper in zip(engine.optimizer.param_groups, groups):
        g.update(hyper)  # the new lr, weight decay...: the restored state's own would override them silently
    step = shared["step"]
    engine.global_steps = step // accum
    position_schedule(engine.lr_scheduler, step // accum)
    return step


def position_schedule(scheduler, optimizer_steps: int) -> None:
    """The schedule as if it had stepped `optimizer_steps` times (its rates computed from the new config)."""
    scheduler.last_epoch = optimizer_steps - 1
    with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": intended here
        warnings.simplefilter("ignore")
        scheduler.step()
