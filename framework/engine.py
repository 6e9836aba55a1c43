"""DeepSpeed engine from the config: ZeRO stage, bf16, clipping, accumulation, a torch.optim optimizer."""
from __future__ import annotations

import math

import torch

from . import grad_reduce
from .ds_config import build as ds_config  # generated, merged with the user's DeepSpeed options
from .nonfinite import NonFiniteGuard


def make_optimizer(model: torch.nn.Module, tcfg) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    # a parameter may learn at its own multiple of the lr (Variational DropPath's drop rates: `lr_scale`)
    scaled = [p for p in trainable if getattr(p, "lr_scale", 1.0) != 1.0]
    plain = [p for p in trainable if getattr(p, "lr_scale", 1.0) == 1.0]
    # biases, norm affines, and weights whose prior is a term of the loss (Variational DropPath's gated convs)
    decay = [p for p in plain if p.ndim > 1 and not getattr(p, "no_weight_decay", False)]
    decayed = {id(p) for p in decay}
    groups = [{"params": decay, "weight_decay": tcfg.weight_decay},
              {"params": [p for p in plain if id(p) not in decayed], "weight_decay": 0.0}]
    for scale in sorted({p.lr_scale for p in scaled}):
        groups.append({"params": [p for p in scaled if p.lr_scale == scale], "weight_decay": 0.0,
                       "lr": tcfg.lr * scale})
    # fused: one kernel for all parameters, which also skips a step on the device when told that its gradients
    # are not finite (framework/nonfinite.py), without a sync; on CPU also much faster than the per-tensor loop
    if tcfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=tcfg.lr, momentum=0.9, fused=True)
    return torch.optim.AdamW(groups, lr=tcfg.lr, fused=True)


def warmup_cosine(optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_engine(model: torch.nn.Module, cfg):
    from .env import import_deepspeed

    deepspeed = import_deepspeed()
    optimizer = make_optimizer(model, cfg.trainer)
    # the schedule advances once per optimizer step; trainer.max_steps counts batches
    accum = cfg.deepspeed.grad_accum
    scheduler = warmup_cosine(optimizer, cfg.trainer.warmup_steps // accum, cfg.trainer.max_steps // accum)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=ds_config(cfg))
    engine.grad_allreduce = grad_reduce.maybe_install(engine, cfg.deepspeed)  # which path, for the run's tags
    engine.nonfinite = NonFiniteGuard(engine, cfg.trainer.nonfinite, cfg.trainer.nonfinite_patience)
    return engine
