"""The DeepSpeed config a run hands to `deepspeed.initialize`: what the framework generates from the typed
config, merged with the user's own DeepSpeed options (`deepspeed.config_file`, then `deepspeed.extra`).

Every DeepSpeed option the framework does not model (communication overlap, bucket sizes, offload, ...)
passes through. A key the framework sets is owned by the option that sets it: a user's value for it is
refused unless it is the same, with one line naming that option, so that no run silently trains with two
different settings written down for one thing.
"""
from __future__ import annotations

import json
from pathlib import Path

from .config import ConfigError

# the generated keys, and the option that sets each (dotted DeepSpeed path -> framework config option)
OWNED = {
    "train_micro_batch_size_per_gpu": "data.batch_size",
    "gradient_accumulation_steps": "deepspeed.grad_accum",
    "gradient_clipping": "deepspeed.grad_clip",
    "bf16.enabled": "deepspeed.bf16",
    "zero_optimization.stage": "deepspeed.zero_stage",
    # the trainer hands DeepSpeed a torch.optim optimizer (no JIT build of DeepSpeed's own Adam)
    "zero_allow_untested_optimizer": None,
}
# keys the framework cannot take from DeepSpeed's config, with what to use instead
REFUSED = {
    "optimizer": "the optimizer comes from trainer.optimizer, trainer.lr and trainer.weight_decay",
    "scheduler": "the learning-rate schedule comes from trainer.warmup_steps and trainer.max_steps",
    "train_batch_size": "the global batch is data.batch_size x deepspeed.grad_accum x the data-parallel ranks",
}
# generated defaults a user may change: they affect DeepSpeed's console output only
DEFAULTS = {"steps_per_print": 10**9, "wall_clock_breakdown": False}


def generated(cfg) -> dict:
    ds = cfg.deepspeed
    return {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "gradient_accumulation_steps": ds.grad_accum,
        "gradient_clipping": ds.grad_clip,
        "bf16": {"enabled": ds.bf16},
        "zero_optimization": {"stage": ds.zero_stage},
        # a torch.optim optimizer: no JIT build of DeepSpeed's fused/cpu Adam (≈45 s on first use)
        "zero_allow_untested_optimizer": True,
        **DEFAULTS,
    }


def build(cfg) -> dict:
    """The whole DeepSpeed config; ConfigError (one line) where the user's options contradict ours."""
    ds, out = cfg.deepspeed, generated(cfg)
    sources = []
    if ds.config_file:
        sources.append((f"deepspeed.config_file={ds.config_file}", read_file(ds.config_file)))
    if ds.extra:
        sources.append(("deepspeed.extra", dict(ds.extra)))
    for source, user in sources:
        for path, value in leaves(user):
            check(source, path, value, out)
        out = merge(out, user)
    return out


def read_file(name: str) -> dict:
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(f"deepspeed.config_file={name}: no such file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"deepspeed.config_file={name} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"deepspeed.config_file={name} must hold a JSON object, not {type(data).__name__}")
    return data


def check(source: str, path: str, value, ours: dict) -> None:
    top = path.split(".")[0]
    if top in REFUSED:
        raise ConfigError(f"{source}: `{top}` cannot be set here: {REFUSED[top]}")
    for owned, option in OWNED.items():
        mine = lookup(ours, owned)
        if not _overlap(path, owned) or (path == owned and value == mine) \
                or (owned.startswith(path + ".") and value == {}):  # an empty section merges into ours
            continue
        hint = f"set {option} instead" if option else "the framework needs this value"
        raise ConfigError(f"{source}: {path}={json.dumps(value)} contradicts {owned}={json.dumps(mine)} "
                                   f"set by the framework; {hint}")


def _overlap(a: str, b: str) -> bool:
    """The same key, or one inside the other (`bf16: true` would replace the section holding bf16.enabled)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def leaves(d: dict, prefix: str = ""):
    """(dotted path, value) of every leaf; an empty dict is a leaf."""
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            yield from leaves(v, path + ".")
        else:
            yield path, v


def lookup(d, path: str):
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
