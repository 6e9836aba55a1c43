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

    from . import grad_reduce
    from .env import EnvironmentError_, detect, init_distributed, shutdown
    from .trainer import Trainer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    env = detect()
    try:
        cfg.check_world(env.world_size)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    try:
        device = init_distributed(env, shm_allreduce=grad_reduce.config_unusable(cfg.deepspeed) is None,
                                  timeout_s=cfg.trainer.collective_timeout_s)
    except EnvironmentError_ as e:
        print(f"vt-train: error: {e}", file=sys.stderr)
        return 2
    start = time.time()
    trainer = Trainer(cfg, raw, env, device)
    results = trainer.fit()
    if env.is_main:
        report(cfg, trainer, results, time.time() - start)
    shutdown()
    return 0


def report(cfg, trainer, results: dict, seconds: float) -> None:
    from .checkpoint import checkpoint_dir

    print(f"\n== {cfg.name}: {trainer.step} steps in {seconds:.0f} s")
    if results:
        print(f"held-out frame accuracy: {results['accuracy']:.4f}  (video-mean {results['video_accuracy']:.4f}, "
              f"macro F1 {results['macro_f1']:.4f}, {results['frames']} frames of {results['videos']} videos)")
        print(f"timeline plot: {trainer.run_dir / 'eval_timeline.png'}")
    print(f"checkpoints: {checkpoint_dir(trainer.run_dir).resolve()}")
    if trainer.tracker.ui_command:
        print(f"MLflow run {trainer.tracker.run_id}; open the dashboard with:\n  {trainer.tracker.ui_command}")


if __name__ == "__main__":
    sys.exit(main())
