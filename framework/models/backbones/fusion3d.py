"""`fusion3d`: the template network of Variational DropPath (Zhou et al., "Spatiotemporal Fusion in 3D CNNs: A
Probabilistic View", CVPR 2020; reference/analysis.md §2), and the fixed sub-networks sampled from it.

Every layer is a pre-activated residual unit with two pre-branches and one shared spatial conv, as in the
reference's dense layer (§2.1, §2.8): h = ReLU(GN(x)); m = Conv1×1×1(ε_s·h) + Conv3×1×1(ε_t·h); the layer
adds Conv1×k×k(ReLU(GN(m))) to x. Keeping only the 1×1×1 branch makes the layer an S unit (spatial conv only),
only the 3×1×1 branch an ST unit ((2+1)D), both the S+ST unit (their sum), neither the identity.
ε_s, ε_t are per-sample scalar gates on the branch inputs (`ConcreteGate`): off (both kept: the plain template,
the warm-up), variational (relaxed Bernoulli with a learned drop rate, in train and eval as in the reference
code), or fixed 0/1 masks (a sampled sub-network evaluated with the template's weights).

Differences from the reference, on purpose: residual units instead of dense concatenation (the unit types are
the same); the stem (Conv 1×3×3, stride 2 in space) and the transitions (GN-ReLU-Conv1×1×1 + AvgPool 1×2×2)
are spatial only, so every bit of temporal modelling sits in a gated ST branch and an S-only sub-network is
exactly invariant to the order of the frames (the reference's 5×7×7 stem mixes time before any gate);
GroupNorm instead of BatchNorm; the classifier input is not gated (the head is not the backbone's).

`model.backbone_kwargs`: widths (channels per stage), depths (layers per stage), kernel (k), p_init (0.1),
tau (0.2), architecture (null: the template; a list of one unit per layer, S | ST | S+ST | none: a fixed
network with only the kept convs, which trains on its own), rate_lr_scale (1: the drop rates learn at the run's
lr, as in the reference; a short run on small data may need them to learn faster, e.g. 10).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..staged import Layout
from .base import Created, Family

UNITS = ("S", "ST", "S+ST", "none")
TEMPLATE = "template"
GATE_MODES = ("off", "variational", "fixed")
EPS = 1e-8  # the reference's epsilon inside the logs of the relaxation


def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(channels, 8), channels)


def relaxed_drop(p: torch.Tensor, n: int, tau: float, like: torch.Tensor) -> torch.Tensor:
    """[n, 1, 1, 1, 1] relaxed Bernoulli drop indicators (binary concrete, the reference's `_concrete_dropout`)."""
    u1, u2 = (torch.rand((n, 1, 1, 1, 1), dtype=like.dtype, device=like.device) for _ in range(2))
    logits = (torch.log(p + EPS) - torch.log(1 - p + EPS)
              + torch.log(-torch.log(u1 + EPS) + EPS) - torch.log(-torch.log(u2 + EPS) + EPS))
    return torch.sigmoid(logits / tau)


class ConcreteGate(nn.Module):
    """One scalar per sample multiplying a branch's input; not rescaled. p = σ(logit) is the drop rate."""

    def __init__(self, p_init: float = 0.1, tau: float = 0.2, lr_scale: float = 1.0):
        super().__init__()
        self.tau = tau
        # shape [1], not a scalar: DeepSpeed broadcasts parameters as bytes, which a 0-d tensor cannot be viewed as
        self.logit = nn.Parameter(torch.full((1,), math.log(p_init) - math.log(1 - p_init)))
        self.logit.lr_scale = lr_scale  # framework/engine.py gives it lr × lr_scale
        self.register_buffer("keep", torch.ones(1))  # fixed mode: 1 kept, 0 dropped
        self.mode = "off"

    @property
    def p(self) -> torch.Tensor:
        return torch.sigmoid(self.logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "off":
            return x
        if self.mode == "fixed":
            return x * self.keep.to(x.dtype)
        return x * (1 - relaxed_drop(self.p.to(x.dtype), x.shape[0], self.tau, x))

    def kl(self, weight: torch.Tensor, length_scale: float, n: float) -> torch.Tensor:
        """The reference code's KL term of one gated conv: (k/N)(1−p)‖W‖² + (1/N)[p log p + (1−p) log(1−p)]
        (log p and log(1−p) as log-sigmoids: the same numbers, finite at any logit)."""
        p = self.p
        entropy = p * F.logsigmoid(self.logit) + (1 - p) * F.logsigmoid(-self.logit)
        return length_scale / n * (1 - p) * weight.float().pow(2).sum() + entropy / n


class FusionLayer(nn.Module):
    def __init__(self, width: int, kernel: int, unit: str, p_init: float, tau: float, rate_lr_scale: float = 1.0):
        super().__init__()
        self.unit = unit
        spatial, temporal = (True, True) if unit == TEMPLATE else ("S" in unit.split("+"), "ST" in unit.split("+"))
        self.norm_in = _gn(width)
        self.s = nn.Conv3d(width, width, 1, bias=False) if spatial else None
        self.t = nn.Conv3d(width, width, (3, 1, 1), padding=(1, 0, 0), bias=False) if temporal else None
        if unit == TEMPLATE:
            self.gate_s, self.gate_t = (ConcreteGate(p_init, tau, rate_lr_scale) for _ in range(2))
            for conv in (self.s, self.t):  # their prior is the KL term: no weight decay (framework/engine.py)
                conv.weight.no_weight_decay = True
        if spatial or temporal:
            self.norm_mid = _gn(width)
            self.spatial = nn.Conv3d(width, width, (1, kernel, kernel), padding=(0, kernel // 2, kernel // 2),
                                     bias=False)

    def gated(self) -> list[tuple[ConcreteGate, nn.Conv3d]]:
        return [(self.gate_s, self.s), (self.gate_t, self.t)] if self.unit == TEMPLATE else []

    def _both_dropped(self) -> bool:
        return self.unit == TEMPLATE and self.gate_s.mode == "fixed" and not bool(self.gate_s.keep) \
            and not bool(self.gate_t.keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unit == "none" or self._both_dropped():  # no branch: the identity (the "residual operation")
            return x
        h = F.relu(self.norm_in(x))
        branches = [(getattr(self, "gate_s", None), self.s), (getattr(self, "gate_t", None), self.t)]
        m = sum(conv(gate(h) if gate is not None else h) for gate, conv in branches if conv is not None)
        return x + self.spatial(F.relu(self.norm_mid(m)))


class Transition(nn.Sequential):
    """Wider and half the size in space; nothing in time."""

    def __init__(self, cin: int, cout: int):
        super().__init__(_gn(cin), nn.ReLU(), nn.Conv3d(cin, cout, 1, bias=False), nn.AvgPool3d((1, 2, 2)))


class FusionTemplate(nn.Module):
    def __init__(self, widths=(16, 32, 64), depths=(2, 2, 2), kernel: int = 3, p_init: float = 0.1,
                 tau: float = 0.2, architecture=None, rate_lr_scale: float = 1.0):
        super().__init__()
        layers = sum(depths)
        units = [TEMPLATE] * layers if architecture is None else list(architecture)
        self.stem = nn.Sequential(nn.Conv3d(3, widths[0], (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False),
                                  _gn(widths[0]), nn.ReLU())
        self.stages = nn.ModuleList()
        it = iter(units)
        for i, (w, d) in enumerate(zip(widths, depths)):
            blocks = [Transition(widths[i - 1], w)] if i else []
            blocks += [FusionLayer(w, kernel, next(it), p_init, tau, rate_lr_scale) for _ in range(d)]
            self.stages.append(nn.Sequential(*blocks))
        self.norm = _gn(widths[-1])
        self.dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, T, H, W] → [N, C] pooled over time and space (the staged run is this computation)."""
        for unit in [self.stem, *[b for stage in self.stages for b in stage]]:
            x = unit(x)
        return F.relu(self.norm(x)).mean((2, 3, 4))

    def layers(self) -> list[FusionLayer]:
        return [m for m in self.modules() if isinstance(m, FusionLayer)]

    def gates(self) -> list[tuple[ConcreteGate, nn.Conv3d]]:
        return [g for layer in self.layers() for g in layer.gated()]

    def set_gates(self, mode: str) -> None:
        if mode not in GATE_MODES:
            raise ValueError(f"gate mode {mode!r}: choose one of {GATE_MODES}")
        for gate, _ in self.gates():
            gate.mode = mode

    def regularizer(self, length_scale: float, n: float) -> torch.Tensor:
        """Σ over the gated convs of their KL terms (add it to the loss; the reference adds it every step)."""
        return sum(gate.kl(conv.weight, length_scale, n) for gate, conv in self.gates())


def check_kwargs(kwargs: dict) -> None:
    """One-line errors for model.backbone_kwargs of fusion3d."""
    from ...config import ConfigError

    known = ("widths", "depths", "kernel", "p_init", "tau", "architecture", "rate_lr_scale")
    extra = sorted(set(kwargs) - set(known))
    if extra:
        raise ConfigError(f"model.backbone_kwargs.{extra[0]}: not an option of fusion3d ({', '.join(known)})")
    widths, depths = kwargs.get("widths", (16, 32, 64)), kwargs.get("depths", (2, 2, 2))
    if len(widths) != len(depths) or min(widths) < 1 or min(depths) < 1:
        raise ConfigError(f"fusion3d: widths {list(widths)} and depths {list(depths)} must be as long and >= 1")
    p = kwargs.get("p_init", 0.1)
    if not 0 < p < 1 or kwargs.get("tau", 0.2) <= 0 or kwargs.get("kernel", 3) % 2 == 0 \
            or kwargs.get("rate_lr_scale", 1.0) <= 0:
        raise ConfigError("fusion3d: p_init must be in (0, 1), tau > 0, kernel odd and rate_lr_scale > 0")
    arch = kwargs.get("architecture")
    if arch is not None:
        bad = [u for u in arch if u not in UNITS]
        if len(arch) != sum(depths) or bad:
            raise ConfigError(f"fusion3d: architecture needs one unit per layer ({sum(depths)}), each one of "
                              f"{', '.join(UNITS)}; got {list(arch)}")


def _stages(net):
    stages = [[net.stem], *[[s] for s in net.stages]]
    stages[-1].append(net.norm)
    return stages


def _units(net):
    out = [(0, net.stem)] + [(s, block) for s, stage in enumerate(net.stages, 1) for block in stage]
    return out + [(len(net.stages), lambda x: F.relu(net.norm(x)))]


def _space_mean(net, x):
    return x.mean((3, 4)).transpose(1, 2)  # [N, C, T, H, W] → [N, T, C]


class Fusion3D(Family):
    names = ("fusion3d",)
    video = True

    def check_kwargs(self, name, kwargs):
        check_kwargs(kwargs)

    def create(self, name, kwargs):
        check_kwargs(kwargs)
        net = FusionTemplate(**kwargs)
        return Created(net, net.dim, ())

    def layout(self, name, created):
        net = created.net
        return Layout(net, stages=_stages(net), units=_units, pool=_space_mean, dim=net.dim,
                      description=f"the stem and {len(net.stages)} stages of fusion layers", mean=(0.45,) * 3,
                      std=(0.225,) * 3, video=True, temporal_stride=1)
