"""`analysis.*`: what the analysis tools add to a training run (framework/analysis/hooks.py runs them).

    analysis.bias_every=50                      # measure static/dynamic bias every 50 steps (and at step 0)
    analysis.static_dropout.p=0.5               # StaticDropout (an engineering design, see static_dropout.py)
    analysis.fusion.enabled=true model.backbone=fusion3d   # Variational DropPath (fusion.py)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

# the appearance transforms of the dynamic pairs (framework/analysis/pairs.py): here, so that the config needs no torch
DEFAULT_STYLES = ("invert", "channels", "sepia", "cartoon", "canvas")


def _require(ok: bool, msg: str) -> None:
    if not ok:
        from ..config import ConfigError

        raise ConfigError(msg)


@dataclass
class StaticDropoutConfig:
    p: float = 0.0  # drop probability of each static-labelled channel, per sample; 0: off
    layers: List[int] = field(default_factory=lambda: [-1])  # stages (negative: from the end) whose channels drop
    every: int = 50  # steps between measurements of which channels are static
    start: Optional[int] = None  # step of the first measurement (null: `every`); nothing drops before it
    pairs: int = 64  # pairs from data.train_split per measurement
    threshold: float = 0.5  # the unit-label threshold (static: r_stat > t and r_dyn < t)

    def __post_init__(self):
        _require(0 <= self.p < 1, f"analysis.static_dropout.p must be in [0, 1), got {self.p}")
        _require(self.every >= 1 and self.pairs >= 4 and (self.start is None or self.start >= 0),
                 "analysis.static_dropout: every >= 1, pairs >= 4 and start >= 0 (or null)")
        _require(len(self.layers) > 0, "analysis.static_dropout.layers: name at least one stage")

    @property
    def first(self) -> int:
        return self.every if self.start is None else self.start


@dataclass
class FusionConfig:
    enabled: bool = False  # Variational DropPath on a model.backbone=fusion3d template
    warmup_steps: int = 0  # steps with the gates off (the plain S+ST template) before the drop rates learn
    length_scale: float = 50.0  # k of the KL term (the reference: 250 SSv1, 10 Kinetics-400, 50 others)
    train_size: Optional[int] = None  # N of the KL term; null: the number of videos (clips) in data.train_split

    def __post_init__(self):
        _require(self.warmup_steps >= 0 and self.length_scale >= 0,
                 "analysis.fusion: warmup_steps and length_scale must be >= 0")
        _require(self.train_size is None or self.train_size >= 1, "analysis.fusion.train_size must be >= 1")


@dataclass
class AnalysisConfig:
    bias_every: int = 0  # steps between bias measurements during training (0: none)
    bias_layers: Optional[List[int]] = None  # stages to measure (null: all)
    bias_pairs: int = 64
    bias_split: Optional[str] = None  # null: data.train_split
    styles: List[str] = field(default_factory=lambda: list(DEFAULT_STYLES))  # appearance transforms of the pairs
    static_dropout: StaticDropoutConfig = field(default_factory=StaticDropoutConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    def __post_init__(self):
        from .pairs import check_styles

        _require(self.bias_every >= 0, f"analysis.bias_every must be >= 0, got {self.bias_every}")
        _require(self.bias_pairs >= 4, f"analysis.bias_pairs must be >= 4, got {self.bias_pairs}")
        try:
            check_styles(self.styles)
        except ValueError as e:
            _require(False, f"analysis.styles: {e}")

    def check(self, cfg) -> None:
        """What needs the rest of the run's config."""
        if self.fusion.enabled:
            _require(cfg.model.backbone == "fusion3d" and cfg.model.backbone_kwargs.get("architecture") is None,
                     "analysis.fusion.enabled needs the template: model.backbone=fusion3d without "
                     "model.backbone_kwargs.architecture (a fixed sub-network has no gates)")
            _require(cfg.model.dropout == 0, "analysis.fusion.enabled: model.dropout must be 0 (the reference "
                                             "asserts it: the drop rates are the only dropout)")
