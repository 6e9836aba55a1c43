"""Validation during training: `trainer.eval_every=N` scores `data.val_split` with the tasks' own metrics every
N steps (streamed online over whole videos by all ranks, like the final evaluation) and `trainer.best_metric`
names the number that decides the `best` checkpoint (`trainer.best_mode`: max or min).

The best value so far is state: it goes into every checkpoint, so a resumed run keeps its best-so-far.
"""
from __future__ import annotations

import difflib

from .reports import scalars


class ValidationError(ValueError):
    pass


class Validator:
    def __init__(self, cfg, rank: int, world: int, tasks):
        t = cfg.trainer
        self.every, self.metric, self.mode = t.eval_every, t.best_metric, t.best_mode
        self.tasks = tasks
        self.best: float | None = None
        self.best_step: int | None = None
        self.loader = None
        if self.every:
            from .evaluate import eval_loader

            self.loader = eval_loader(cfg.data, cfg.data.val_split, rank, world, tasks)

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def run(self, model, device, step: int, progress: bool) -> tuple[dict, bool]:
        """The tasks' report on the validation split (every rank gets it) and whether it is a new best."""
        from .evaluate import run_inference

        results = run_inference(model, self.loader, device, self.tasks, progress=progress)
        report = self.tasks.evaluate(results)
        return report, self._improved(report, step)

    def value(self, report: dict) -> float:
        flat = scalars(report)
        if self.metric not in flat:
            close = difflib.get_close_matches(self.metric, flat, n=3, cutoff=0.4)
            raise ValidationError(f"trainer.best_metric={self.metric!r} is not a number of the validation report"
                                  f"{'; did you mean ' + ' or '.join(close) + '?' if close else ''} (numbers: "
                                  f"{', '.join(list(flat)[:8])}, ...; see eval.json of a run)")
        return flat[self.metric]

    def _improved(self, report: dict, step: int) -> bool:
        if not self.metric:
            return False
        value = self.value(report)
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.best, self.best_step = value, step
        return better

    # -- resume ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step = state.get("best"), state.get("best_step")
