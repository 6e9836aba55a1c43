"""The memory controls and the leakage probe on every family (2D timm, 3D conv, 3D transformers), and a
real 2-process training run with a timm backbone."""
import json

import pytest
import torch

from framework.config import ModelConfig, load_config
from framework.models import build_model
from framework.models.backbone import build_backbone
from framework.probe import TOLERANCE, probe_leakage
from tests.conftest import final_weights, run_training, tiny_overrides

VIT = {"img_size": 32}


def uint8(*shape, seed=0):
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def build(name, options=None, seed=0, **staged):
    torch.manual_seed(seed)
    return build_backbone(name, "gn", options=options, **staged)[0]


def clip_or_frames(net):
    return uint8(1, 4, 16, 16, 3) if net.video else uint8(4, 32, 32, 3)  # 16²: the smallest the 3D models take


def saved_bytes(run) -> int:
    """Bytes autograd saves for the backward while `run()` runs (each storage once, parameters excluded)."""
    seen: dict[int, int] = {}
    weights: set[int] = set()

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    def go(net, x):
        weights.update(p.untyped_storage().data_ptr() for p in net.parameters())
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            return run(net, x)
    return go, seen


@pytest.mark.parametrize("name, options", [("timm:test_convnext", None), ("r2plus1d_18", None)])
def test_frozen_stages_get_no_gradient_and_store_nothing(name, options):
    # no drop-path: a frozen stage runs in eval mode and draws no masks, which would shift the later ones
    full, frozen = build(name, options, drop_path=0.0), build(name, options, drop_path=0.0, freeze_stages=2)
    x = clip_or_frames(full)
    grads = {}
    for key, net in (("full", full), ("frozen", frozen)):
        net.train()(x).square().sum().backward()
        grads[key] = {n: p.grad for n, p in net.named_parameters()}
    in_frozen = {id(p) for s in range(2) for m in frozen.stage_modules(s) for p in m.parameters()}
    names = {n for n, p in frozen.named_parameters() if id(p) in in_frozen}
    assert names and all(grads["frozen"][n] is None for n in names)
    for n, g in grads["frozen"].items():  # freezing changes nothing downstream: the trainable gradients are the same
        if n not in names:
            torch.testing.assert_close(g, grads["full"][n], rtol=1e-4, atol=1e-6)
    # what a frozen backbone saves is exactly what its trainable part alone saves from the frozen output
    go, seen = saved_bytes(lambda net, x: net(x))
    go(frozen, x)
    with_prefix = sum(seen.values())
    units = frozen.units()
    k = sum(1 for s, _ in units if s < 2)
    with torch.no_grad():
        h = x
        for _, f in units[:k]:
            h = f(h)
    seen.clear()

    def suffix(net, h):
        for _, f in units[k:]:
            h = f(h)
        return h
    go_suffix, seen = saved_bytes(suffix)
    go_suffix(frozen, h)
    assert with_prefix == sum(seen.values()) > 0
    go_all, seen = saved_bytes(lambda net, x: net(x))
    frozen.freeze_stages = frozen.num_stages
    go_all(frozen, x)
    assert sum(seen.values()) == 0


def gradients(net, x, granularity="none", every=1, seed=0):
    net.granularity, net.every = granularity, every
    net.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    net.train()(x).square().sum().backward()
    after = torch.rand(1)  # the RNG stream after the step: a recomputation must not have shifted it
    return {n: p.grad.clone() for n, p in net.named_parameters()}, after


def max_relative_error(got, want):
    return max(((got[n] - w).norm() / w.norm().clamp(min=1e-12)).item() for n, w in want.items())


@pytest.mark.parametrize("name, options", [("timm:test_vit", VIT), ("timm:test_convnext", None),
                                           ("swin3d_t", None), ("mvit_v2_s", None)])
def test_checkpointing_gives_the_gradients_of_none_with_drop_path(name, options):
    net = build(name, options, drop_path=0.5, feature_dropout=0.2)
    x = clip_or_frames(net)
    want, rng_want = gradients(net, x)
    other, _ = gradients(net, x, seed=1)
    assert max_relative_error(other, want) > 1e-3, "drop-path must be active for this test to mean anything"
    for granularity, every in (("stage", 1), ("blocks", 2), ("backbone", 1)):
        got, rng_got = gradients(net, x, granularity, every)
        assert max_relative_error(got, want) <= 1e-5, granularity
        assert torch.equal(rng_got, rng_want), granularity


def small_model(backbone, norm="gn", **kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone=backbone, norm=norm, allow_batchnorm=norm == "bn", head="lstm",
                                   hidden=8, dropout=0.2, **kw), 3)


@pytest.mark.parametrize("backbone, kw", [("timm:test_efficientnet", {}), ("timm:test_vit", {"backbone_kwargs": VIT})])
def test_2d_timm_backbones_do_not_leak(backbone, kw):
    report = probe_leakage(small_model(backbone, **kw), uint8(3, 6, 32, 32, 3), t=2)
    assert all(v <= TOLERANCE for mode in report.values() for v in mode.values()), report


def test_timm_batchnorm_leaks_in_train_mode_only():
    report = probe_leakage(small_model("timm:test_efficientnet", "bn"), uint8(3, 6, 32, 32, 3), t=2)
    assert report["train"]["future"] > 1e-3 and report["train"]["other_sequences"] > 1e-3, report
    assert report["eval"]["future"] <= TOLERANCE and report["eval"]["other_sequences"] <= TOLERANCE, report


@pytest.mark.parametrize("backbone, size", [("mc3_18", 16), ("swin3d_t", 16)])
def test_a_video_backbone_leaks_nothing_across_clips_and_sees_its_whole_clip(backbone, size):
    """Clips of 4 frames: the outputs up to a clip's end do not depend on the next clip or on other
    sequences; inside a clip they depend on the clip's later frames (the documented non-causal clip)."""
    model = small_model(backbone, clip_len=4)
    frames = uint8(2, 8, size, size, 3)
    at_boundary = probe_leakage(model, frames, t=3)
    assert all(v <= TOLERANCE for mode in at_boundary.values() for v in mode.values()), at_boundary
    if model.temporal_stride == 1:
        inside = probe_leakage(model, frames, t=1)
        assert inside["eval"]["future"] > 1e-4 and inside["eval"]["other_sequences"] <= TOLERANCE, inside


def test_phase_training_with_a_timm_backbone_through_vt_launch(tiny_data, tmp_path):
    """2 processes, a DeepSpeed engine: timm's BatchNormAct model under GroupNorm, its stem frozen, the rest
    checkpointed per stage. The frozen stem leaves the run bit-identical to its initial weights."""
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(tiny_data, run_dir, "model.backbone=timm:test_efficientnet", "model.freeze_stages=1",
                               "model.checkpointing.granularity=stage", "trainer.max_steps=4", "trainer.eval=false",
                               "logging.mlflow.enabled=false")
    proc = run_training(overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [json.loads(line)["train/loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 4 and all(0 < x < 10 for x in losses)
    cfg, _ = load_config(overrides)
    torch.manual_seed(cfg.seed)  # the trainer's seed_everything before its build
    initial = build_model(cfg.model, 7).state_dict()
    final = final_weights(run_dir)
    stem = [k for k in initial if k.startswith(("backbone.conv_stem.", "backbone.bn1."))]
    assert stem and all(torch.equal(final[k], initial[k]) for k in stem)
    assert any(not torch.equal(final[k], v) for k, v in initial.items() if k.startswith("backbone.blocks."))
