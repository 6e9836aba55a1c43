"""Sequence-parallel hidden-state relay.

world = DP × SP. The SP ranks of a group hold consecutive chunks of the same sequences (rank r of the group
holds chunk r). Every rank runs the expensive backbone on its own chunk in parallel; the cheap temporal head
then runs as a relay: its state comes from rank r−1 (rank 0 of the group: the state carried from the previous
batch), and its new state goes to rank r+1.

handoff="detached": states travel forward only — truncated BPTT at chunk boundaries.
handoff="exact": ∂loss/∂state also travels back r+1 → r, so every parameter gets the gradient a single process
holding the whole sequence would get.
handoff="gather": for heads that see the whole sequence (not causal: a localization head, an offline TCN). The
SP group all-gathers its features (and the targets and validity of the whole sequence), every rank runs the
head on the whole sequence, and each keeps the gradient of its own part of the features: the head's loss and
parameter gradients are those of one process holding the whole sequence. Autograd does not flow through
gloo's all_gather, so the backward is written out: each rank takes ∂L/∂(gathered features) with
`torch.autograd.grad` and slices out its part; the group's first rank alone carries the head's parameter
gradients and the loss (the others carry zeros, so the SP sum counts them once), and the surrogate below
gives DeepSpeed exactly those gradients. A causal head works too (its state is carried on every rank).

Why the head's backward is `torch.autograd.grad` and not `engine.backward`: DeepSpeed reduces gradients with
hooks that fire during backward, and the relay's backward is sequential (rank r waits for r+1). If each rank ran
engine.backward at its own moment, ranks would enter gradient collectives in different orders and deadlock.
Instead the head's backward touches no `.grad`; then every rank runs one `engine.backward` on a surrogate
whose gradient is exactly the relayed one (features·∂L/∂features + Σ params·∂L/∂params), so all ranks issue the
same collectives in the same order.

With sp=1 there is nothing to relay: the head runs on the attached features and the loss itself is the
surrogate, so a step is one forward and one `engine.backward(loss)` (the relay's two autograd passes
computed the same gradients, bitwise: tests/test_relay.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from .models.heads import detach_state, is_causal

HANDOFFS = ("exact", "detached", "gather")


@dataclass(frozen=True)
class Topology:
    rank: int
    world: int
    sp: int

    def __post_init__(self):
        if self.sp < 1 or self.world % self.sp:
            raise ValueError(f"sequence parallel size sp={self.sp} must divide the world size {self.world}")

    @property
    def dp(self) -> int:
        return self.world // self.sp

    @property
    def sp_rank(self) -> int:
        return self.rank % self.sp

    @property
    def dp_rank(self) -> int:
        return self.rank // self.sp

    @property
    def first(self) -> int:
        return self.rank - self.sp_rank

    @property
    def last(self) -> int:
        return self.first + self.sp - 1

    @property
    def prev(self) -> int | None:
        return self.rank - 1 if self.sp_rank > 0 else None

    @property
    def next(self) -> int | None:
        return self.rank + 1 if self.sp_rank < self.sp - 1 else None


def send(tensors, dst: int) -> None:
    for t in tensors:
        dist.send(t.detach().contiguous(), dst)


def recv(like, src: int) -> tuple[torch.Tensor, ...]:
    out = tuple(torch.empty_like(t) for t in like)
    for t in out:
        dist.recv(t, src)
    return out


@dataclass
class RelayResult:
    outputs: torch.Tensor  # the head's outputs on this rank's chunk (detached)
    loss: torch.Tensor  # this rank's share of the group's loss (detached)
    surrogate: torch.Tensor  # backward this (times sp, see `backward_scale`) to get the relayed gradients
    carried: tuple | None  # state to carry into the next batch (meaningful on the group's first rank)


def sp_group(topo: Topology):
    """This rank's SP process group; every rank creates every group, in the same order (torch requires it)."""
    mine = None
    for g in range(topo.dp):
        group = dist.new_group(list(range(g * topo.sp, (g + 1) * topo.sp)))
        mine = group if g == topo.dp_rank else mine
    return mine


class Relay:
    def __init__(self, head: torch.nn.Module, topo: Topology, handoff: str = "exact", one_pass: bool | None = None):
        """one_pass: at sp=1 (the default there), backward the loss itself; False runs the relay's two passes
        even at sp=1 (the reference the one-pass step is tested against)."""
        if handoff not in HANDOFFS:
            raise ValueError(f"handoff must be one of {HANDOFFS}, got {handoff!r}")
        if handoff != "gather" and topo.sp > 1 and not is_causal(head):
            raise ValueError(f"{type(head).__name__} sees the whole sequence: at sp > 1 it needs handoff='gather'")
        if one_pass and topo.sp > 1:
            raise ValueError(f"one_pass needs sp=1 (sp={topo.sp} relays the state between ranks)")
        self.head, self.topo, self.handoff = head, topo, handoff
        self.one_pass = topo.sp == 1 if one_pass is None else one_pass
        self.gathers = handoff == "gather"
        self.group = sp_group(topo) if self.gathers and topo.sp > 1 else None

    @property
    def backward_scale(self) -> int:
        """DeepSpeed averages gradients over the whole world; the SP ranks' shares must add, not average."""
        return self.topo.sp

    # -- gather --------------------------------------------------------------------------------
    def whole(self, x: torch.Tensor) -> torch.Tensor:
        """gather: the SP group's parts of a [B, T, ...] tensor side by side along time (rank order)."""
        if self.group is None:
            return x
        wire = x.to(torch.uint8) if x.dtype == torch.bool else x  # gloo has no bool collectives
        parts = [torch.empty_like(wire) for _ in range(self.topo.sp)]
        dist.all_gather(parts, wire.contiguous(), group=self.group)
        out = torch.cat(parts, 1)
        return out.bool() if x.dtype == torch.bool else out

    def scored(self, targets: dict) -> dict:
        """The targets this rank's head outputs are scored against: its own part (relay), or the SP group's
        whole sequence (gather)."""
        return {k: self.whole(v) for k, v in targets.items()} if self.gathers else targets

    def share(self, stats: torch.Tensor) -> torch.Tensor:
        """A step's logged sums, as this rank's share of the group's (gather: the group's first rank holds them)."""
        return stats * float(self.topo.sp_rank == 0) if self.gathers and self.topo.sp > 1 else stats

    def _head(self, feats, state, reset, valid):
        extra = {"valid": valid} if getattr(self.head, "masked", False) and valid is not None else {}
        return self.head(feats, state, reset, **extra)

    def _gather_step(self, features, carried, reset, loss_fn, valid) -> RelayResult:
        topo, T = self.topo, features.shape[1]
        feats = self.whole(features.detach()).requires_grad_(True)
        reset = self.whole(reset[:, None])[:, 0]  # a video starts where the group's first part says so
        valid = None if valid is None else self.whole(valid)
        state_in = carried if carried is not None else \
            self.head.initial_state(features.shape[0], device=features.device, dtype=features.dtype)
        outputs, state_out = self._head(feats, state_in, reset, valid)
        loss = loss_fn(outputs)
        params = list(self.head.parameters())
        grads = torch.autograd.grad(loss, [feats, *params], allow_unused=True)
        mine = grads[0][:, topo.sp_rank * T:(topo.sp_rank + 1) * T]
        owner = topo.sp_rank == 0  # holds the head's gradients and the loss: the SP sum counts them once
        surrogate = (features * mine).sum()
        for p, g in zip(params, grads[1:]):
            if g is not None:  # the same parameters on every rank, so every rank issues the same reductions
                surrogate = surrogate + (p * (g if owner else torch.zeros_like(g))).sum()
        share = loss.detach() if owner else torch.zeros_like(loss.detach())
        return RelayResult(outputs.detach(), share, surrogate, detach_state(state_out))

    # -- relay ---------------------------------------------------------------------------------
    def step(self, features: torch.Tensor, carried, reset: torch.Tensor, loss_fn, valid=None) -> RelayResult:
        """features: this rank's backbone output [B, T, D], still attached to the backbone's graph.
        carried: the state from the previous batch (used by the group's first rank). loss_fn(outputs) must
        return this rank's share of the group's loss (normalised by the frames of the whole group); with
        gather, the loss of the whole sequence (see `scored`). valid [B, T]: the steps that are not padding,
        for heads that mask (`head.masked`)."""
        topo, exact = self.topo, self.handoff == "exact"
        # the shapes of the state (None: a stateless head, nothing to hand on); a carried state has them already
        template = carried if carried is not None else \
            self.head.initial_state(features.shape[0], device=features.device, dtype=features.dtype)
        if self.one_pass:  # sp=1: nothing crosses a rank, with any handoff
            outputs, state_out = self._head(features, template, reset, valid)
            loss = loss_fn(outputs)
            return RelayResult(outputs.detach(), loss.detach(), loss, detach_state(state_out))
        if self.gathers:
            return self._gather_step(features, carried, reset, loss_fn, valid)
        feats = features.detach().requires_grad_(True)
        if topo.prev is None or template is None:
            state_in = template  # carried states arrive detached (relayed, received or loaded)
        else:
            state_in = recv(template, topo.prev)
            state_in = tuple(s.requires_grad_(exact) for s in state_in)
        outputs, state_out = self._head(feats, state_in, reset, valid)
        loss = loss_fn(outputs)
        if topo.next is not None and state_out is not None:
            send(state_out, topo.next)
        grads = self._head_backward(feats, state_in, state_out, loss, template)
        g_feats, g_params = grads[0], grads[1:]
        surrogate = (features * g_feats).sum()
        for p, g in zip(self.head.parameters(), g_params):
            if g is not None:
                surrogate = surrogate + (p * g).sum()
        return RelayResult(outputs.detach(), loss.detach(), surrogate, self._carry(state_out, template))

    def _head_backward(self, feats, state_in, state_out, loss, template):
        topo, exact = self.topo, self.handoff == "exact"
        roots, seeds = [loss], [torch.ones_like(loss)]
        if exact and topo.next is not None and state_out is not None:
            # integer-like state (a transformer's frame count) carries no gradient
            pairs = [(s, g) for s, g in zip(state_out, recv(template, topo.next)) if s.requires_grad]
            roots += [s for s, _ in pairs]
            seeds += [g for _, g in pairs]
        params = list(self.head.parameters())
        wrt = [feats, *params]
        relay_back = exact and topo.prev is not None and state_in is not None
        if relay_back:
            wrt += list(state_in)
        grads = torch.autograd.grad(roots, wrt, seeds, allow_unused=True)
        if relay_back:
            g_state = [torch.zeros_like(s) if g is None else g for s, g in zip(state_in, grads[1 + len(params):])]
            send(g_state, topo.prev)
        return grads[:1 + len(params)]

    def _carry(self, state_out, template):
        """The group's last rank holds the state at the end of the sequence: hand it to the first rank."""
        topo = self.topo
        if state_out is None:
            return None
        if topo.sp == 1:
            return detach_state(state_out)
        if topo.sp_rank == topo.sp - 1:
            send(state_out, topo.first)
            return None
        if topo.sp_rank == 0:
            return recv(template, topo.last)
        return None
