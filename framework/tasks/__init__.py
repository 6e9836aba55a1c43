"""Tasks: what a run learns and how it is scored (framework/tasks/base.py has the contract).

`task=phase` (default), `task=tools`, `task=anticipation`, or several at once: `task=[phase,tools]` trains one
backbone and one head body with one output block per task, the losses weighted by `task.<name>.weight`.
A new task is one module with a config dataclass and a Task class, registered in REGISTRY.
"""
from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

import numpy as np
import torch

from .base import TaskContext, TaskError, VideoResult, as_stages, final_stage

REGISTRY = {
    "phase": ("framework.tasks.phase", "PhaseConfig", "PhaseTask"),
    "tools": ("framework.tasks.tools", "ToolsConfig", "ToolsTask"),
    "anticipation": ("framework.tasks.anticipation", "AnticipationConfig", "AnticipationTask"),
    "clip": ("framework.tasks.clip", "ClipConfig", "ClipTask"),
    "localization": ("framework.tasks.localization", "LocalizationConfig", "LocalizationTask"),
}


def _load(name: str, which: int):
    import importlib

    module, *names = REGISTRY[name]
    return getattr(importlib.import_module(module), names[which])


def parse_task_configs(raw: dict) -> dict:
    """{name: {options}} → {name: that task's config dataclass}, with one-line errors for unknown tasks or
    options. An empty dict means the default task, phase."""
    from ..config import ConfigError

    raw = dict(raw or {"phase": {}})
    parsed = {}
    for name, options in raw.items():
        if name not in REGISTRY:
            close = difflib.get_close_matches(name, REGISTRY, n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise ConfigError(f"task={name}: unknown task{hint}; tasks: {', '.join(REGISTRY)}")
        cls = _load(name, 0)
        if dataclasses.is_dataclass(options):
            parsed[name] = options
            continue
        fields = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(options or {}) - fields)
        if extra:
            raise ConfigError(f"task.{name}.{extra[0]}: not an option of task {name} ({', '.join(sorted(fields))})")
        parsed[name] = cls(**dict(options or {}))
    return parsed


class TaskSet:
    """The tasks of a run on one model: the head's outputs are their blocks side by side, in config order."""

    def __init__(self, tasks: list):
        self.tasks = tasks
        self.slices, start = {}, 0
        for t in tasks:
            self.slices[t.name] = slice(start, start + t.out_dim)
            start += t.out_dim
        self.out_dim = start
        self.names = ["loss"] + [f"{t.name}/loss" for t in tasks] + \
                     [f"{t.name}/{s}" for t in tasks for s in t.window]

    def __iter__(self):
        return iter(self.tasks)

    @property
    def sampling(self) -> str:
        """How evaluation reads a split; all tasks of a run must agree."""
        kinds = {t.sampling for t in self.tasks}
        if len(kinds) > 1:
            raise TaskError(f"tasks {', '.join(t.name for t in self.tasks)} cannot share a run: "
                            + "; ".join(f"{t.name} is tested on {t.sampling}" for t in self.tasks))
        return kinds.pop()

    def _clip_option(self, name: str):
        return next(getattr(t.cfg, name) for t in self.tasks if t.sampling == "views")

    @property
    def views(self) -> int:
        return self._clip_option("views")

    @property
    def crops(self) -> int:
        return self._clip_option("crops")

    @property
    def test_crop(self):
        return self._clip_option("test_crop")

    def block(self, outputs: torch.Tensor, task) -> torch.Tensor:
        return outputs[..., self.slices[task.name]]

    # -- training ----------------------------------------------------------------------------
    def targets(self, batch, videos, stride: int = 1) -> dict[str, torch.Tensor]:
        """Each task's targets of the batch. stride: frames per output step of the model (a 3D backbone's
        temporal stride): a per-frame target is then the one of each step's last frame, the latest frame the
        step has seen."""
        out = {t.name: t.targets(batch, videos) for t in self.tasks}
        if stride > 1:
            out = {k: v[:, stride - 1::stride] if t.per_frame else v for (k, v), t in zip(out.items(), self.tasks)}
        return out

    def losses(self, outputs: torch.Tensor, targets: dict, frames: torch.Tensor) -> list[torch.Tensor]:
        """Each task's loss sum divided by `frames` (the frames of the whole SP group's sequences)."""
        stages = as_stages(outputs)
        return [t.loss(self.block(stages, t), targets[t.name]) / frames for t in self.tasks]

    def loss(self, outputs, targets, frames) -> torch.Tensor:
        return sum(t.weight * part for t, part in zip(self.tasks, self.losses(outputs, targets, frames)))

    @torch.no_grad()
    def step_stats(self, loss: torch.Tensor, outputs: torch.Tensor, targets: dict, frames) -> torch.Tensor:
        """One tensor of sums per step (read once per logging window: no sync per step), in `names` order."""
        parts = [loss.float().reshape(1)] + [p.float().reshape(1) for p in self.losses(outputs, targets, frames)]
        final = final_stage(outputs)
        parts += [t.window_stats(self.block(final, t), targets[t.name]).to(loss.device) for t in self.tasks]
        return torch.cat(parts)

    def window_metrics(self, totals: list[float], steps: int) -> dict[str, float]:
        """Train metrics of a logging window from the summed step stats (losses: mean per step)."""
        named = dict(zip(self.names, totals))
        out = {"loss": named["loss"] / steps}
        for t in self.tasks:
            out[f"{t.name}/loss"] = named[f"{t.name}/loss"] / steps
            sums = {s: named[f"{t.name}/{s}"] for s in t.window}
            out.update({f"{t.name}/{k}": v for k, v in t.window_metrics(sums).items()})
        return out

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, results: list[VideoResult]) -> dict:
        """{task: report}; a task whose split has no labels says so instead of scoring."""
        report = {}
        for t in self.tasks:
            mine = [r.slice(self.slices[t.name]) for r in results]
            report[t.name] = t.evaluate(mine) if t.has_labels(mine) else \
                {"unlabeled": f"split has no labels for task {t.name}: nothing scored"}
        return report

    def headlines(self, report: dict) -> list[str]:
        return [report[t.name]["unlabeled"] if "unlabeled" in report[t.name] else t.headline(report[t.name])
                for t in self.tasks]

    def columns(self, result: VideoResult) -> dict[str, np.ndarray]:
        """The predictions table's rows of one video: one per frame (streamed), one per video (views), one per
        detection (videos: localization)."""
        own = {}
        for t in self.tasks:
            own.update(t.columns(result.slice(self.slices[t.name])))
        rows = {"views": 1, "stream": len(result.frame)}.get(self.sampling)
        rows = len(next(iter(own.values()), [])) if rows is None else rows
        cols = {"video": [result.video.id] * rows}
        if self.sampling == "stream":
            cols.update(frame=result.frame, time=result.time)
        cols.update(own)
        return cols

    def write_files(self, results: list[VideoResult], report: dict, out_dir: Path) -> list[Path]:
        files = []
        for t in self.tasks:
            if "unlabeled" not in report[t.name]:
                files += t.write_files([r.slice(self.slices[t.name]) for r in results], report[t.name], out_dir)
        return files


def build_tasks(task_cfg: dict, root: Path, manifest, train_videos, model_cfg=None) -> TaskSet:
    """task_cfg: Config.task ({name: config dataclass}); model_cfg: the run's ModelConfig."""
    ctx = TaskContext(Path(root), manifest, list(train_videos), model_cfg)
    tasks = TaskSet([_load(name, 1)(cfg, ctx) for name, cfg in parse_task_configs(task_cfg).items()])
    tasks.sampling  # noqa: B018 (refuses tasks that cannot be evaluated together, before anything runs)
    return tasks


__all__ = ["REGISTRY", "TaskError", "TaskSet", "VideoResult", "as_stages", "build_tasks", "final_stage",
           "parse_task_configs"]
