"""Non-finite losses and gradient norms, caught without a device sync per step.

Who decides, per engine configuration:
- ZeRO 1/2 (fp32 or bf16) and bf16 at ZeRO 0: DeepSpeed's optimizer already checks the global gradient norm
  (it reads it on the host: a sync DeepSpeed pays anyway) and skips the step when it is not finite; the
  engine counts it (`skipped_steps`). We read that host counter after each step: nothing more is synced.
- ZeRO 0 in fp32 (the default): DeepSpeed checks nothing. The global norm the clipping computes is kept, and
  just before the optimizer runs a device flag `found_inf = !isfinite(norm)` is handed to the fused torch
  optimizer, which then leaves weights and moments untouched on the device (the mechanism torch's GradScaler
  uses). The flags of a logging window travel to the host with the window's losses, in the one transfer the
  window already makes (Trainer.log_train), and before any checkpoint.

`trainer.nonfinite=stop` ends the run with one line naming the first such step. `skip` drops those optimizer
steps (the LR schedule still advances at ZeRO 0 fp32; DeepSpeed's path holds it), counts them, and stops once
`trainer.nonfinite_patience` come in a row. A non-finite loss in the window counts as a non-finite step.
Either way the weights stay finite, and a checkpoint with non-finite weights is never written (checkpoint.py).
"""
from __future__ import annotations

import torch


class NonFiniteStop(RuntimeError):
    """The run stops; the message is the one line the user sees."""


class NonFiniteGuard:
    """mode: stop | skip | off (no check at all: what bench.step_time compares against)."""

    def __init__(self, engine, mode: str = "stop", patience: int = 5):
        self.engine, self.mode, self.patience = engine, mode, patience
        self.skipped, self.streak, self.streak_start, self.last = 0, 0, None, 0
        self.pending: list[tuple[int, torch.Tensor | bool]] = []  # (step, device flag or host verdict), unread
        self.own = not (engine.bfloat16_enabled() or engine.fp16_enabled() or engine.zero_optimization())
        self.norm = None
        if self.own:
            self._install_clipping()  # in every mode: `off` differs from the others by the check alone
        if mode == "off":
            return
        if self.own:
            self._install_flag()
        self._wrap_step()

    # -- per step: nothing synced -----------------------------------------------------------------
    def _install_clipping(self) -> None:
        engine = self.engine

        def clip_and_keep_norm():
            """DeepSpeed's clip_fp32_gradients, keeping the norm it drops. torch's foreach clipping, not
            DeepSpeed's: that one norms each gradient in a Python loop, then all-reduces the norm over the
            data-parallel group (for MoE models) — at ZeRO 0 every rank holds the reduced gradients already, so
            every rank computes the same norm, and a one-rank run paid a gloo all-reduce per step."""
            self.norm = torch.nn.utils.clip_grad_norm_(engine.module.parameters(), engine.gradient_clipping(),
                                                       foreach=True)

        engine.clip_fp32_gradients = clip_and_keep_norm

    def _install_flag(self) -> None:
        engine, opt = self.engine, self.engine.basic_optimizer
        if not opt.defaults.get("fused"):
            raise ValueError("the non-finite check at ZeRO 0 needs a fused torch optimizer (engine.make_optimizer)")
        self.found = torch.zeros((), device=next(engine.module.parameters()).device)

        def flag(optimizer, args, kwargs):
            norm = self.norm if self.norm is not None else grad_norm(optimizer)  # no clipping: nothing computed it
            self.norm = None
            self.found.copy_(~torch.isfinite(norm.reshape(-1)[0]))
            optimizer.found_inf, optimizer.grad_scale = self.found, None  # the fused step skips when set

        opt.register_step_pre_hook(flag)

    def _wrap_step(self) -> None:
        engine, step = self.engine, self.engine.step

        def guarded_step(*args, **kwargs):
            boundary, skipped = engine.is_gradient_accumulation_boundary(), engine.skipped_steps
            step(*args, **kwargs)
            if boundary:
                batch = engine.global_steps * engine.gradient_accumulation_steps()  # the trainer's step, 1-based
                # ours: a device flag, read later; DeepSpeed's: its host counter, already known
                self.pending.append((batch, self.found.clone() if self.own else engine.skipped_steps > skipped))

        engine.step = guarded_step

    # -- at the logging window (and before a checkpoint) ------------------------------------------
    def device_flags(self) -> list[torch.Tensor]:
        """The pending device flags, to travel to the host with the window's values."""
        return [f for _, f in self.pending if isinstance(f, torch.Tensor)]

    def take(self, read: list[float], losses: dict[int, float]) -> None:
        """`read`: device_flags() as read on the host; `losses`: step -> that step's loss, summed over ranks."""
        values = iter(read)
        bad = {s for s, f in self.pending if (bool(next(values)) if isinstance(f, torch.Tensor) else f)}
        bad |= {s for s, loss in losses.items() if loss != loss or abs(loss) == float("inf")}
        steps = sorted({s for s, _ in self.pending} | set(losses))
        self.pending = []
        self.settle([(s, s in bad) for s in steps])

    def read_pending(self) -> None:
        """Before a checkpoint: the flags the window has not read yet (a sync only when a checkpoint is due)."""
        flags = self.device_flags()
        self.take(torch.stack(flags).tolist() if flags else [], {})

    def settle(self, steps: list[tuple[int, bool]]) -> None:
        if self.mode == "off":
            return
        for step, bad in steps:
            if step <= self.last:  # judged before a checkpoint already
                continue
            self.last = step
            if not bad:
                self.streak, self.streak_start = 0, None
                continue
            if self.mode == "stop":
                raise NonFiniteStop(f"non-finite loss or gradient norm at step {step} (trainer.nonfinite=stop): "
                                    "the step was not applied and the run stops; the last complete checkpoint "
                                    "is kept (trainer.nonfinite=skip drops such steps)")
            self.skipped += 1
            self.streak += 1
            self.streak_start = self.streak_start or step
            if self.streak >= self.patience:
                raise NonFiniteStop(f"{self.streak} non-finite steps in a row (steps {self.streak_start}-{step}; "
                                    f"trainer.nonfinite_patience={self.patience}), {self.skipped} skipped in all: "
                                    "the run stops; the last complete checkpoint is kept")


def grad_norm(optimizer) -> torch.Tensor:
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())
