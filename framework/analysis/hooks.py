"""What the analysis tools add to a training run, behind one small interface the trainer calls:

    hooks = build_hooks(cfg, trainer)      # after the engine exists
    hooks.begin(step)                      # once, after resuming (step 0 for a fresh run)
    ... backward(surrogate + hooks.extra_loss())  # every step (Variational DropPath's KL term)
    hooks.after_step(step)                 # after every step (step = steps done)
    hooks.state_dict() / load_state_dict() # with the trainer's checkpoints

- `analysis.bias_every=N`: the static/dynamic bias of the chosen layers at step 0 and every N steps, on pairs of
  `analysis.bias_split` (bias_history.jsonl and bias_history.png in the run folder; bias/... metrics in MLflow);
- `analysis.static_dropout.p > 0`: StaticDropout (static_dropout.py, an engineering design);
- `analysis.fusion.enabled`: Variational DropPath on the fusion3d template: the gates are off for
  `warmup_steps` steps, then learn their drop rates, and the KL term is added to every step's loss.

The extra loss is added to the backward once per rank, outside the sequence-parallel share (the surrogate is
scaled by sp, this is not): DeepSpeed's average over the ranks then counts it exactly once. Measurements run
in eval mode with the RNG forked, so they change nothing in the training run they observe.
"""
from __future__ import annotations

import json

import torch

from .features import check_layers, is_channels_last


class Hook:
    def begin(self, step: int) -> None: ...
    def extra_loss(self):
        return 0.0
    def after_step(self, step: int) -> None: ...
    def state_dict(self) -> dict:
        return {}
    def load_state_dict(self, state: dict) -> None: ...


class BiasMonitor(Hook):
    """analysis.bias_every."""

    def __init__(self, cfg, trainer):
        from .pairs import PairSource, PairSpec

        a, d = cfg.analysis, cfg.data
        self.every, self.trainer = a.bias_every, trainer
        self.model = trainer.engine.module
        self.layers = check_layers(self.model.backbone, a.bias_layers)
        self.channels_last = is_channels_last(cfg.model.backbone)
        self.split = a.bias_split or d.train_split
        self.source = PairSource(d.root, self.split, cfg.model.clip_len or d.seq_len, a.bias_pairs, d.batch_size,
                                 PairSpec(tuple(a.styles), cfg.seed), stride=d.clip_stride)

    def begin(self, step: int) -> None:
        if step == 0:
            self.after_step(0)

    def after_step(self, step: int) -> None:
        t = self.trainer
        if step % self.every or not t.env.is_main:
            return
        from . import bias
        from .plots import bias_history

        with torch.random.fork_rng(devices=[]):
            report = bias.measure(self.model, self.source, self.layers, t.device, channels_last=self.channels_last,
                                  about={"split": self.split, "step": step})
        path = t.run_dir / "bias_history.jsonl"
        t.run_dir.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps({"step": step, "report": report}) + "\n")
        history = read_history(path)
        bias_history(history, t.run_dir / "bias_history.png")
        t.tracker.log_metrics({f"bias/{k}": v for k, v in bias.scalars(report).items()}, step)
        t.tracker.log_artifact(t.run_dir / "bias_history.png")


def read_history(path) -> list[dict]:
    """bias_history.jsonl, one entry per step (a resumed run's re-measured steps: the last one)."""
    by_step = {}
    for line in open(path):
        entry = json.loads(line)
        by_step[entry["step"]] = entry
    return [by_step[s] for s in sorted(by_step)]


class FusionTraining(Hook):
    """analysis.fusion: the template's gates off during the warm-up, variational after, with the KL term."""

    def __init__(self, cfg, trainer):
        self.cfg, self.trainer = cfg.analysis.fusion, trainer
        self.net = trainer.engine.module.backbone.net
        self.n = self.cfg.train_size or len(trainer.loader.videos)
        self.last_kl = None

    def active(self, step: int) -> bool:
        return step >= self.cfg.warmup_steps

    def begin(self, step: int) -> None:
        self.net.set_gates("variational" if self.active(step) else "off")

    def extra_loss(self):
        if not self.active(self.trainer.step):
            return 0.0
        kl = self.net.regularizer(self.cfg.length_scale, self.n)
        self.last_kl = kl.detach()
        return kl

    def after_step(self, step: int) -> None:
        self.begin(step)  # the warm-up ends: the next step's forward is gated
        t = self.trainer
        if step % t.cfg.trainer.log_every or not t.env.is_main:
            return
        rates = [g.p.item() for g, _ in self.net.gates()]
        metrics = {"fusion/p_spatial_mean": sum(rates[0::2]) / len(rates[0::2]),
                   "fusion/p_temporal_mean": sum(rates[1::2]) / len(rates[1::2])}
        if self.last_kl is not None:
            metrics["fusion/kl"] = float(self.last_kl)
        t.tracker.log_metrics(metrics, step)
        with open(t.run_dir / "fusion_rates.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "gated": self.active(step), "p": rates, **metrics}) + "\n")


class AnalysisHooks(Hook):
    def __init__(self, parts: dict[str, Hook]):
        self.parts = parts

    def begin(self, step: int) -> None:
        for p in self.parts.values():
            p.begin(step)

    def extra_loss(self):
        return sum(p.extra_loss() for p in self.parts.values())

    def after_step(self, step: int) -> None:
        for p in self.parts.values():
            p.after_step(step)

    def state_dict(self) -> dict:
        return {name: p.state_dict() for name, p in self.parts.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, p in self.parts.items():
            p.load_state_dict(state.get(name, {}))


def build_hooks(cfg, trainer) -> AnalysisHooks:
    """The parts analysis.* turns on (none by default: a hook that does nothing)."""
    from .static_dropout import StaticDropout

    a = cfg.analysis
    parts: dict[str, Hook] = {}
    if a.fusion.enabled:
        parts["fusion"] = FusionTraining(cfg, trainer)
    if a.static_dropout.p > 0:
        parts["static_dropout"] = StaticDropout(cfg, trainer)
    if a.bias_every:
        parts["bias"] = BiasMonitor(cfg, trainer)
    return AnalysisHooks(parts)
