"""Every path and name a user gives, checked before any rank or job starts (vt-launch, vt-train, vt-eval).

Each mistake is one ConfigError line, and the commands exit with status 2: the data root and its manifest,
the shards of the splits used, the training split and (if the run evaluates) the eval split, the pretrained
weights, the checkpoint a run resumes from (complete, made with the same settings: framework/resume_guard.py),
and whether another job uses the run folder. (An unknown `experiment=` is refused by Hydra: configs/config.yaml
lists the group as required, not optional.)
"""
from __future__ import annotations

from pathlib import Path

from .config import ConfigError


def manifest(root: str, splits: dict[str, str]):
    """The manifest of `root`, with each split of `splits` (config key -> split name) in it and its shards
    present, of the size the manifest says."""
    from .data.manifest import Manifest, ManifestError, check_shard

    try:
        m = Manifest.load(Path(root))
    except ManifestError as e:
        raise ConfigError(f"data.root={root}: {e}") from None
    except (OSError, ValueError, KeyError, TypeError) as e:  # not JSON, or not a manifest's fields
        raise ConfigError(f"data.root={root}: unreadable manifest.json ({type(e).__name__}: {e})") from None
    for key, split in splits.items():
        try:
            for name in sorted({v.shard for v in m.split(split)}):
                check_shard(Path(root), m.shard(name))
        except ManifestError as e:
            raise ConfigError(f"{key}={split}: {e}") from None
    return m


def pretrained(source: str | None) -> None:
    if not source:
        return
    if source.startswith("torchvision:"):
        import torchvision

        try:
            torchvision.models.get_weight(source.split(":", 1)[1])  # the name only: no download here
        except (ValueError, KeyError, AttributeError) as e:
            raise ConfigError(f"model.pretrained={source}: not a torchvision weights name ({e})") from None
    elif not Path(source).expanduser().is_file():
        raise ConfigError(f"model.pretrained={source}: no such file")


def training(cfg, world_size: int, check_lock: bool = True) -> None:
    """Before any rank starts: everything a training run will open or resume from. check_lock=False where the
    caller takes the lock itself (vt-train's rank 0)."""
    from . import run_lock
    from .checkpoint import CheckpointError
    from .resume_guard import plan

    d = cfg.data
    splits = {"data.train_split": d.train_split, **({"data.eval_split": d.eval_split} if cfg.trainer.eval else {})}
    m = manifest(d.root, splits)
    pretrained(cfg.model.pretrained)
    try:
        plan(cfg, world_size, m.split(d.train_split))
        if check_lock:
            run_lock.check(cfg.run_path)
    except (CheckpointError, run_lock.RunLockError) as e:
        raise ConfigError(str(e)) from None


def evaluation(cfg, split: str, checkpoint_path: Path) -> None:
    """vt-eval: the data of `split` and a complete checkpoint."""
    from .checkpoint import read_complete, why_incomplete

    manifest(cfg.data.root, {"--split": split})
    if not checkpoint_path.is_dir():
        raise ConfigError(f"no checkpoint {checkpoint_path.name} in {checkpoint_path.parent}")
    if read_complete(checkpoint_path) is None:
        raise ConfigError(f"checkpoint {checkpoint_path} is not complete ({why_incomplete(checkpoint_path)})")
