"""`vt-train [hydra overrides]`: train one run. Launch several processes with `vt-launch` or torchrun."""
from __future__ import annotations

import os
import sys
import time

from .entry import entry_point


@entry_point
def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError, load_config

    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg, raw = load_config(argv)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    import torch

    from . import preflight, run_lock
    from .env import detect

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    env = detect()
    try:  # before the process group: a mistake is one line, not a rank's traceback
        cfg.check_world(env.world_size)
        from .models import check_model

        check_model(cfg.model)  # weights that do not fit: said now, before the process group and DeepSpeed
        preflight.training(cfg, env.world_size, check_lock=False)
        lock = run_lock.acquire(cfg.run_path) if env.is_main else None  # rank 0 holds the folder for the job
    except (ConfigError, run_lock.RunLockError) as e:
        print(f"config error: {e}", file=sys.stderr)  # every rank: a rank-specific cause must not go unsaid
        return 2
    try:
        return train(cfg, raw, env)
    finally:
        if lock is not None:
            run_lock.release(cfg.run_path, lock)


def train(cfg, raw, env) -> int:
    from . import grad_reduce, preempt
    from .checkpoint import CheckpointError
    from .env import EnvironmentError_, init_distributed, shutdown
    from .nonfinite import NonFiniteStop
    from .trainer import Trainer

    try:
        device = init_distributed(env, shm_allreduce=grad_reduce.config_unusable(cfg.deepspeed) is None,
                                  timeout_s=cfg.trainer.collective_timeout_s)
    except EnvironmentError_ as e:  # e.g. a master address that does not resolve
        print(f"vt-train: error: {e}", file=sys.stderr)
        return 2
    start, trainer = time.time(), None
    head_steps = cfg.lofi.head_steps if cfg.lofi.enabled else 0
    cfg.trainer.eval = cfg.trainer.eval and not head_steps  # LoFi: only the final head is scored
    try:
        trainer = Trainer(cfg, raw, env, device)
        results = trainer.fit()
        if head_steps and not preempt.stopped():
            trainer = head_stage(trainer, cfg, raw, env, device)
            results = trainer.fit()
    except (NonFiniteStop, CheckpointError) as e:  # every rank stops at the same step
        if env.is_main:
            close_progress_bars()
            print(f"vt-train: {'stopped' if isinstance(e, NonFiniteStop) else 'error'}: {e}", file=sys.stderr)
        if trainer is not None:
            trainer.tracker.close("FAILED")
        shutdown()
        return 1 if isinstance(e, NonFiniteStop) else 2
    if env.is_main:
        report(cfg, trainer, results, time.time() - start)
    shutdown()
    return 0


def close_progress_bars() -> None:
    """The bar of a loop left by an exception ends its line, so that the message gets a line of its own."""
    from tqdm import tqdm

    for bar in list(tqdm._instances):
        bar.close()


def head_stage(lofi_trainer, cfg, raw, env, device):
    """LoFi's last stage: the head from scratch at full fidelity on the encoder just trained, frozen."""
    from .checkpoint import newest
    from .lofi import head_stage as stage_config
    from .trainer import Trainer

    weights = newest(lofi_trainer.run_dir).path / "mp_rank_00_model_states.pt"
    head_cfg, head_raw = stage_config(cfg, raw, weights)
    if env.is_main:
        print(f"\nLoFi stage done; the head from scratch at full fidelity on the frozen encoder of {weights} "
              f"for {head_cfg.trainer.max_steps} steps in {head_cfg.run_dir}")
    lofi_trainer.engine.destroy()
    return Trainer(head_cfg, head_raw, env, device)


def report(cfg, trainer, results: dict, seconds: float) -> None:
    from .checkpoint import checkpoint_dir

    print(f"\n== {cfg.name}: {trainer.step} steps in {seconds:.0f} s")
    if results:
        print(f"held-out ({cfg.data.eval_split}):")
        for line in trainer.tasks.headlines(results):
            print(f"  {line}")
        print(f"report: {trainer.run_dir / 'eval.json'}; plots and exports: {trainer.run_dir / 'eval'}")
    print(f"checkpoints: {checkpoint_dir(trainer.run_dir).resolve()}")
    if trainer.tracker.ui_command:
        print(f"MLflow run {trainer.tracker.run_id}; open the dashboard with:\n  {trainer.tracker.ui_command}")


if __name__ == "__main__":
    sys.exit(main())
