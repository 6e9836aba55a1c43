"""The static/dynamic estimator (Kowal et al., reference/analysis.md §1.5–1.6) on hand-computed cases and on the
reference's synthetic latent case with a known answer (§1.10); the pairs; the pooled stage features; the
StaticDropout tap. Training on synthetic clips (the directions) is in test_analysis_directions.py."""
import numpy as np
import pytest
import torch

from framework.analysis import estimator as est
from framework.analysis.features import clip_layer_features, recording
from framework.analysis.pairs import STYLES, PairSpec, apply_style, make_pair, pair_factors
from framework.analysis.static_dropout import drop_channels
from framework.config import CheckpointingConfig, ModelConfig
from framework.models import build_model


def hand_case():
    """4 pairs (0, 1 dynamic; 2, 3 static). Channel kind A (×12) follows the motion: za = zb on dynamic pairs,
    opposite on static ones; kind B (×8) the reverse. Worked out by hand:
    kind A: all 8 values 1,3,0,2,1,3,2,0 → mean 1.5, variance 10/8 = 1.25; dynamic pairs (1,1), (3,3) around
    μ = 2: cross-covariance 1; static pairs (0,2), (2,0) around μ = 1: −1. Kind B: the mirror: −1 and 1.
    V = 20 · 1.25 = 25; s_dyn = (12 − 8)/25 = 0.16, s_stat = −0.16; softmax(0.16, −0.16, 1) =
    (e^−0.84, e^−1.16, 1)/Σ = (0.247370, 0.179628, 0.573001); dims int(20w) = 4, 3, residual 13.
    Units: A r_dyn = 1/1 (factor variance of 1,3,1,3 is 1), r_stat = −1/1 → dynamic; B → static."""
    a_za, a_zb = np.array([1, 3, 0, 2.0]), np.array([1, 3, 2, 0.0])
    b_za, b_zb = np.array([0, 2, 1, 3.0]), np.array([2, 0, 1, 3.0])
    za = np.stack([a_za] * 12 + [b_za] * 8, 1)
    zb = np.stack([a_zb] * 12 + [b_zb] * 8, 1)
    return za, zb, np.array([0, 0, 1, 1])


def test_layer_scores_of_a_hand_computed_case():
    s = est.layer_scores(*hand_case())
    np.testing.assert_allclose(s.scores, [0.16, -0.16, 1.0], rtol=1e-12)
    np.testing.assert_allclose(s.softmax, [0.247370, 0.179628, 0.573001], atol=2e-6)
    assert s.dims.tolist() == [4, 3, 13]  # int() truncation; the residual takes the remainder
    assert s.percent.tolist() == [20.0, 15.0, 65.0]


def test_unit_scores_and_labels_of_a_hand_computed_case():
    r = est.unit_scores(*hand_case())
    np.testing.assert_allclose(r[:, 0], [1.0, -1.0])
    np.testing.assert_allclose(r[:, -1], [-1.0, 1.0])
    assert est.unit_counts(est.unit_labels(r)) == {"dynamic": 12, "static": 8, "joint": 0, "residual": 0,
                                                   "undecided": 0}


def test_unit_labels_use_strict_inequalities_and_a_constant_channel_is_undecided():
    r = np.array([[0.9, 0.1, 0.9, 0.1, 0.5, 0.9, np.nan],
                  [0.1, 0.9, 0.9, 0.1, 0.9, 0.5, np.nan]])
    got = [est.UNIT_LABELS[i] for i in est.unit_labels(r, 0.5)]
    assert got == ["dynamic", "static", "joint", "residual", "undecided", "undecided", "undecided"]
    za, zb, f = hand_case()
    za, zb = np.concatenate([za, np.ones((4, 1))], 1), np.concatenate([zb, np.ones((4, 1))], 1)
    assert np.isnan(est.unit_scores(za, zb, f)[:, -1]).all()  # 0/0, as np.var gives it in the reference


def test_the_estimator_needs_pairs_of_both_factors():
    za, zb, _ = hand_case()
    with pytest.raises(ValueError, match="no static pairs"):
        est.layer_scores(za, zb, np.zeros(4, int))


def latent_features(n=4000, seed=0, joint=0):
    """§1.10: channels 0–15 copies of a motion latent m, 16–39 of an appearance latent a, 40–63 noise, plus
    N(0, 0.3²) everywhere; a dynamic pair shares m (fresh a), a static pair shares a (fresh m). `joint` more
    channels copy a latent both clips of every pair share (the video itself)."""
    rng = np.random.default_rng(seed)
    factor = np.arange(n) % 2
    m1, a1, v = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    m2 = np.where(factor == est.DYNAMIC, m1, rng.normal(size=n))
    a2 = np.where(factor == est.STATIC, a1, rng.normal(size=n))

    def channels(m, a):
        z = np.concatenate([np.repeat(m[:, None], 16, 1), np.repeat(a[:, None], 24, 1), rng.normal(size=(n, 24)),
                            np.repeat(v[:, None], joint, 1)], 1)
        return z + rng.normal(0, 0.3, z.shape)
    return channels(m1, a1), channels(m2, a2), factor


def test_synthetic_latent_case_recovers_the_known_units_and_orders_the_layer_scores():
    za, zb, f = latent_features()
    assert est.unit_counts(est.unit_labels(est.unit_scores(za, zb, f))) == \
        {"dynamic": 16, "static": 24, "joint": 0, "residual": 24, "undecided": 0}
    s = est.layer_scores(za, zb, f)
    assert s.scores[0] < s.scores[1] < 1 == s.scores[2]
    # the reference's run of this case: 0.23 / 0.35 / 1.0 → 14 / 16 / 34 of 64 (one draw; the dims move by one
    # with the draw): compressed by the fixed residual, the truth is 16 / 24 / 24
    np.testing.assert_allclose(s.scores[:2], [0.23, 0.34], atol=0.015)
    assert np.abs(s.dims - [14, 16, 34]).max() <= 1 and s.dims.sum() == 64


def test_a_channel_both_clips_of_every_pair_share_is_joint_and_a_sum_of_the_two_latents_is_not():
    """A latent the pairs of both kinds keep (the video) makes joint units. The reference's other suggestion,
    a channel m + a, has r = var(m)/(var(m) + var(a) + noise) < 0.5 for both factors: residual, not joint."""
    za, zb, f = latent_features(joint=8)
    assert est.unit_counts(est.unit_labels(est.unit_scores(za, zb, f)))["joint"] == 8
    rng = np.random.default_rng(1)
    za, zb, f = latent_features(seed=2)
    r = est.unit_scores(za[:, :16] + za[:, 16:32] + rng.normal(0, 0.01, (4000, 16)), zb[:, :16] + zb[:, 16:32], f)
    assert (r < 0.5).all() and (r > 0.4).all()


# -- pairs ---------------------------------------------------------------------------------------------------
def clip(T=6, size=16, seed=0):
    return torch.randint(0, 256, (T, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_style_is_a_function_of_one_frame_and_changes_the_appearance(style):
    x = clip()
    whole = apply_style(style, x)
    assert whole.dtype == torch.uint8 and whole.shape == x.shape
    for t in range(x.shape[0]):  # the same transform on every frame: consistent over the clip
        assert torch.equal(whole[t], apply_style(style, x[t:t + 1])[0])
    change = (whole.float() - x.float()).abs().mean()
    assert change == 0 if style == "none" else change > 10


def test_dynamic_pairs_keep_the_frames_static_pairs_shuffle_them():
    x, spec = clip(T=8), PairSpec()
    styled = {s: apply_style(s, x) for s in spec.styles}
    for i, f in enumerate(pair_factors(8, spec.seed)):
        a, b, factor = make_pair(x, i, int(f), spec)
        assert factor == f
        s1 = next(s for s, v in styled.items() if torch.equal(a, v))
        if factor == est.DYNAMIC:  # the same frames, another style
            s2 = next(s for s, v in styled.items() if torch.equal(b, v))
            assert s2 != s1
        else:  # the same styled frames, all of them, in another order
            assert not torch.equal(a, b)
            assert sorted(map(bytes, b.numpy())) == sorted(map(bytes, a.numpy()))
        again = make_pair(x, i, int(f), spec)
        assert torch.equal(again[0], a) and torch.equal(again[1], b)  # a function of (seed, index)


@pytest.mark.parametrize("pairs", [4, 9, 64, 256])
def test_pair_factors_are_balanced_and_do_not_follow_the_order_of_the_clips(pairs):
    """Clips come in the split's order, and a split's videos may alternate their classes (the synthetic action
    clips do): each factor must get both classes, or the estimator credits the class to neither factor."""
    f = pair_factors(pairs, seed=0)
    assert (f == est.DYNAMIC).sum() == -(-pairs // 2) and (f == est.STATIC).sum() == pairs // 2
    assert np.array_equal(f, pair_factors(pairs, seed=0))
    if pairs < 64:
        return
    assert not np.array_equal(f, pair_factors(pairs, seed=1))
    label = np.arange(pairs) % 2  # the class of the clip pair i is made from, on such a split
    for factor in (est.DYNAMIC, est.STATIC):
        assert 0.3 <= label[f == factor].mean() <= 0.7


# -- features ------------------------------------------------------------------------------------------------
def uint8(*shape, seed=0):
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def manual_stage_means(backbone, x):
    """Stage outputs by running the layout's units one by one, pooled over space: [n, C] per stage."""
    out, units = {}, backbone.units()
    for i, (s, f) in enumerate(units[:-1]):
        x = f(x)
        if i + 1 == len(units) - 1 or units[i + 1][0] != s:
            out[s] = x.mean(tuple(range(2, x.ndim)))
    return out


@pytest.mark.parametrize("name,chunk", [("resnet18", 4), ("fusion3d", None)])
def test_layer_features_are_stage_outputs_pooled_over_time_and_space_and_change_nothing(name, chunk):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=name, head="linear", frame_chunk=chunk), 3).eval()
    frames = uint8(2, 8, 32, 32, 3)
    with torch.no_grad():
        plain = model.features(frames)
        video = model.backbone.video
        manual = manual_stage_means(model.backbone, frames if video else frames.flatten(0, 1))
    layers = list(range(model.backbone.num_stages))
    got = clip_layer_features(model, frames, layers)
    for k in layers:
        want = manual[k] if video else manual[k].view(2, 8, -1).mean(1)
        torch.testing.assert_close(got[k], want, rtol=1e-5, atol=1e-6)
    with recording(model.backbone, layers, False):
        with torch.no_grad():
            assert torch.equal(model.features(frames), plain)  # reading the layers changes no output
    assert all(not v for v in model.backbone.taps.values())  # and the taps are gone after


def test_a_2d_model_with_temporal_pooling_sees_a_shuffled_clip_as_the_same_clip():
    """Why a TSN-style model comes out static-biased whatever it learned: its clip feature ignores the order."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18", head="linear"), 3)
    frames = uint8(2, 8, 32, 32, 3)
    got = clip_layer_features(model, frames, [2, 4])
    shuffled = clip_layer_features(model, frames[:, torch.randperm(8)], [2, 4])
    for k in got:
        torch.testing.assert_close(got[k], shuffled[k], rtol=1e-5, atol=1e-6)


# -- StaticDropout's tap -------------------------------------------------------------------------------------
def test_static_dropout_zeroes_or_rescales_only_the_static_channels():
    x = torch.rand(64, 6, 3, 3) + 1
    static = torch.tensor([True, False, True, False, False, False])
    torch.manual_seed(0)
    y = drop_channels(x, static, 0.25)
    assert torch.equal(y[:, ~static], x[:, ~static])
    kept = y[:, static] != 0
    scaled = x[:, static] * (torch.ones(()) / 0.75)
    assert torch.equal(y[:, static][kept], scaled[kept])  # dropped, or kept and scaled by 1/(1 − p)
    per_map = kept.flatten(2)
    assert torch.equal(per_map.all(-1), per_map.any(-1))  # one draw per sample and channel, for the whole map
    assert 0.1 < 1 - per_map.all(-1).float().mean() < 0.4


def tapped_gradients(granularity: str, seed: int = 0):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="fusion3d", head="linear", frame_chunk=4, clip_len=4,
                                    checkpointing=CheckpointingConfig(granularity=granularity)), 3).train()
    static = torch.arange(32) % 3 == 0
    model.backbone.taps[2] = [lambda x: drop_channels(x, static, 0.5)]
    torch.manual_seed(seed)
    frames = uint8(2, 8, 16, 16, 3)
    out, _ = model(frames, None, torch.ones(2, dtype=torch.bool))
    out.square().sum().backward()
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_static_dropout_under_checkpointing_gives_the_gradients_of_the_forward_taken():
    want = tapped_gradients("none")
    other = tapped_gradients("none", seed=1)
    assert any(not torch.allclose(other[n], w) for n, w in want.items()), "the drop must be active"
    got = tapped_gradients("stage")
    for n, w in want.items():
        torch.testing.assert_close(got[n], w, rtol=1e-5, atol=1e-7)
