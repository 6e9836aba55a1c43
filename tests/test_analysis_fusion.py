"""Variational DropPath (Zhou et al., reference/analysis.md §2): the gates, the KL term in the code's form,
the sub-networks and their marginals, the template's config errors. Training directions: test_analysis_directions.py."""
import math

import numpy as np
import pytest
import torch

from framework.analysis import fusion
from framework.analysis.features import clip_layer_features
from framework.config import ConfigError, ModelConfig, TrainerConfig, load_config
from framework.engine import make_optimizer
from framework.models import build_model
from framework.models.backbones.fusion3d import ConcreteGate, FusionTemplate

SMALL = {"widths": [8, 16], "depths": [2, 1]}


def gate(p: float) -> ConcreteGate:
    g = ConcreteGate()
    with torch.no_grad():
        g.logit.fill_(math.log(p / (1 - p)))
    return g


def test_kl_term_is_the_reference_codes_form():
    """(k/N)(1 − p)‖W‖² + (1/N)[p log p + (1 − p) log(1 − p)] with p = 0.25, ‖W‖² = 4, k = 10, N = 100:
    0.1 · 0.75 · 4 + 0.01 · (0.25 ln 0.25 + 0.75 ln 0.75) = 0.3 − 0.005623351 = 0.294376649."""
    w = torch.full((4, 1, 1, 1, 1), 1.0)
    assert gate(0.25).kl(w, 10.0, 100).item() == pytest.approx(0.294376649, rel=1e-6)


def test_with_zero_weights_the_weight_term_gives_p_no_gradient():
    """§2.9 asks for a zero gradient for p when ‖W‖ = 0. In the code's form that holds for the weight term only:
    the entropy term still gives dKL/dp = log(p / (1 − p)) / N, which vanishes at p = 1/2 alone."""
    zero = torch.zeros(3, 2, 3, 1, 1)
    grads = []
    for k in (10.0, 1000.0):
        g = gate(0.2)
        g.kl(zero, k, 50).backward()
        grads.append(g.logit.grad.item() / (0.2 * 0.8))  # dKL/dp = dKL/dlogit / σ'(logit)
    assert grads[0] == grads[1]  # no k dependence: the weight term contributed nothing
    assert grads[0] == pytest.approx(math.log(0.2 / 0.8) / 50, rel=1e-5)
    half = gate(0.5)
    half.kl(zero, 10.0, 50).backward()
    assert abs(half.logit.grad.item()) < 1e-9


def test_the_drop_rate_the_kl_term_alone_settles_at_rises_toward_one_with_the_length_scale():
    """A branch the data does not need feels only the KL term: dKL/dlogit = 0 at logit = k‖W‖², so p* = σ(k‖W‖²)."""
    w = torch.full((2, 1, 1, 1, 1), 0.5)  # ‖W‖² = 0.5
    rates = []
    for k in (0.5, 2.0, 8.0):
        g = ConcreteGate()
        with torch.no_grad():
            g.logit.fill_(k * 0.5)
        g.kl(w, k, 10).backward()
        assert abs(g.logit.grad.item()) < 1e-7
        rates.append(g.p.item())
    assert rates[0] < rates[1] < rates[2] and rates[2] > 0.98


def test_relaxed_gate_drops_about_p_of_the_samples_nearly_hard_and_never_rescales():
    g = gate(0.3)
    g.mode = "variational"
    torch.manual_seed(0)
    kept = g(torch.ones(20000, 1, 1, 1, 1)).flatten()
    assert (1 - kept).mean().item() == pytest.approx(0.3, abs=0.015)
    soft = ConcreteGate(0.3, tau=1.0)
    soft.mode = "variational"
    softer = soft(torch.ones(20000, 1, 1, 1, 1)).flatten()
    between = [((k > 0.1) & (k < 0.9)).float().mean().item() for k in (kept, softer)]
    assert between[0] < 0.25 < 0.5 < between[1]  # τ = 0.2: mostly near a hard 0/1 draw, unlike τ = 1
    x = torch.randn(4, 2, 3, 2, 2)
    g.mode = "fixed"
    assert torch.equal(g(x), x * 1.0)  # kept: the input as it is, no 1/(1 − p)
    g.keep.fill_(0)
    assert torch.equal(g(x), torch.zeros_like(x))
    g.mode = "off"
    assert g(x) is x


def net(architecture=None, seed=0) -> FusionTemplate:
    torch.manual_seed(seed)
    return FusionTemplate(**SMALL, architecture=architecture).eval()


def test_a_sampled_sub_network_computes_exactly_what_its_exported_architecture_does():
    """The template under fixed masks (the weights it learned) and the exported fixed network given those weights
    (only the kept convs exist): bitwise the same outputs."""
    template = net()
    masks = np.array([[1, 0], [0, 1], [0, 0]], bool)  # S, ST, none
    arch = fusion.architecture(masks)
    assert arch == ["S", "ST", "none"]
    fusion.set_masks(template, masks)
    exported = FusionTemplate(**SMALL, architecture=arch).eval()
    missing, unexpected = exported.load_state_dict(template.state_dict(), strict=False)
    dropped = {"stages.0.0.t.weight", "stages.0.1.s.weight", "stages.1.1.s.weight", "stages.1.1.t.weight",
               "stages.1.1.norm_mid.weight", "stages.1.1.norm_mid.bias", "stages.1.1.spatial.weight"}
    assert not missing and set(unexpected) == dropped | {k for k in template.state_dict() if ".gate_" in k}
    x = torch.randn(2, 3, 6, 16, 16)
    with torch.no_grad():
        assert torch.equal(template(x), exported(x))


def test_an_s_only_network_cannot_see_the_order_of_the_frames_and_an_st_network_can():
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (2, 8, 16, 16, 3), dtype=torch.uint8)
    order = torch.randperm(8)
    for arch, invariant in ((["S"] * 3, True), (["ST"] * 3, False)):
        model = build_model(ModelConfig(backbone="fusion3d", head="linear",
                                        backbone_kwargs={**SMALL, "architecture": arch}), 2)
        a, b = (clip_layer_features(model, x, [2])[2] for x in (frames, frames[:, order]))
        assert torch.allclose(a, b, atol=1e-5) == invariant, arch


def test_weight_norms_are_what_the_kl_weight_term_charges_per_branch():
    net = FusionTemplate(widths=(4, 4), depths=(1, 1))
    for layer in net.layers():
        torch.nn.init.constant_(layer.s.weight, 0.5)  # 4×4 weights of a 1×1×1 conv: 16 × 0.25
        torch.nn.init.constant_(layer.t.weight, 0.1)  # 4×4×3 of a 3×1×1 conv: 48 × 0.01
    assert np.allclose(fusion.weight_norms(net), [[4.0, 0.48], [4.0, 0.48]])


def test_marginals_from_one_minus_root_p_hand_computed():
    """p_s = 0.25, p_t = 0.04 → keep 1 − √p = 0.5, 0.8 → S 0.1, ST 0.4, S+ST 0.4, none 0.1."""
    (m,) = fusion.marginals(np.array([[0.25, 0.04]]))
    assert m["keep_spatial"] == pytest.approx(0.5) and m["keep_temporal"] == pytest.approx(0.8)
    assert m["marginals"] == pytest.approx({"S": 0.1, "ST": 0.4, "S+ST": 0.4, "none": 0.1})
    assert m["preferred"] in ("ST", "S+ST")


def test_sampled_masks_keep_each_gate_with_probability_one_minus_p_and_their_log_probability():
    p = np.array([[0.25, 0.04], [0.5, 0.9]])
    draws = np.stack([fusion.sample_masks(p, np.random.default_rng(i)) for i in range(4000)])
    np.testing.assert_allclose(draws.mean(0), 1 - p, atol=0.025)
    masks = np.array([[1, 0], [0, 1]], bool)
    assert fusion.log_prob(masks, p) == pytest.approx(math.log(0.75) + math.log(0.04) + math.log(0.5) + math.log(0.1))


def test_gated_weights_are_left_out_of_weight_decay():
    model = build_model(ModelConfig(backbone="fusion3d", head="linear", backbone_kwargs=SMALL), 2)
    decay, no_decay = make_optimizer(model, TrainerConfig(weight_decay=0.1)).param_groups
    gated = {id(c.weight) for _, c in model.backbone.net.gates()}
    assert gated and not gated & {id(p) for p in decay["params"]}
    assert gated <= {id(p) for p in no_decay["params"]}
    assert id(model.backbone.net.layers()[0].spatial.weight) in {id(p) for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


@pytest.mark.parametrize("overrides,message", [
    (["analysis.fusion.enabled=true"], "needs the template"),
    (["model.backbone=fusion3d", "+model.backbone_kwargs.archtecture=[S]"], "not an option of fusion3d"),
    (["model.backbone=fusion3d", "+model.backbone_kwargs.architecture=[S,ST]"], "one unit per layer"),
    (["model.backbone=fusion3d", "+model.backbone_kwargs.architecture=[S,S,S,S,S,T]"], "one unit per layer"),
    (["model.backbone=fusion3d", "analysis.fusion.enabled=true", "model.dropout=0.5"], "model.dropout must be 0"),
    (["analysis.styles=[invert]"], "at least two different"),
    (["analysis.static_dropout.p=1.0"], "static_dropout.p"),
])
def test_analysis_config_mistakes_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_config(overrides)
    assert "\n" not in str(e.value)
