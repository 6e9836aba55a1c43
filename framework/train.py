"""`vt-train [hydra overrides]`: train one run. Launch several processes with `vt-launch` or torchrun."""
from __future__ import annotations

import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError, load_config

    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg, raw = load_config(argv)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    import torch

    from . import grad_reduce, preempt
    from .env import detect, init_distributed, shutdown
    from .trainer import Trainer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    env = detect()
    try:
        cfg.check_world(env.world_size)
        from .models import check_model

        check_model(cfg.model)  # weights that do not fit: said now, before the process group and DeepSpeed
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    device = init_distributed(env, shm_allreduce=grad_reduce.config_unusable(cfg.deepspeed) is None)
    start = time.time()
    head_steps = cfg.lofi.head_steps if cfg.lofi.enabled else 0
    cfg.trainer.eval = cfg.trainer.eval and not head_steps  # LoFi: only the final head is scored
    trainer = Trainer(cfg, raw, env, device)
    results = trainer.fit()
    if head_steps and not preempt.stopped():
        trainer = head_stage(trainer, cfg, raw, env, device)
        results = trainer.fit()
    if env.is_main:
        report(cfg, trainer, results, time.time() - start)
    shutdown()
    return 0


def head_stage(lofi_trainer, cfg, raw, env, device):
    """LoFi's last stage: the head from scratch at full fidelity on the encoder just trained, frozen."""
    from .checkpoint import checkpoint_dir, latest
    from .lofi import head_stage as stage_config
    from .trainer import Trainer

    ckpt = checkpoint_dir(lofi_trainer.run_dir)
    weights = ckpt / latest(ckpt) / "mp_rank_00_model_states.pt"
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
