"""The backbone zoo under one contract: every listed backbone builds offline (random init), gives its stated
feature shape, has no trainable BatchNorm under the sync-free policies and loads a state dict from a local
file; the norm policy on every kind of BatchNorm; the registry's and the weights loader's one-line errors."""
import pytest
import torch
from torch import nn

from framework.config import ConfigError, ModelConfig, load_config
from framework.models import build_model
from framework.models.backbone import build_backbone
from framework.models.norm import FrozenBatchNorm, convert_norm, trainable_batchnorm
from framework.models.weights import load_weights, read_weights

# the stated feature dimension and temporal stride (README, framework/models/backbones/video3d.py)
LISTED = {
    "resnet18": (512, 1), "resnet34": (512, 1), "resnet50": (2048, 1), "resnet101": (2048, 1),
    "convnext_tiny": (768, 1), "convnext_small": (768, 1), "convnext_base": (1024, 1),
    "timm:nfnet_l0": (2304, 1), "timm:resnet50_gn": (2048, 1), "timm:convnext_tiny": (768, 1),
    "timm:vit_small_patch16_224": (384, 1),
    "r3d_18": (512, 8), "mc3_18": (512, 1), "r2plus1d_18": (512, 8), "s3d": (1024, 8), "mvit_v2_s": (768, 2),
    "swin3d_t": (768, 2), "fusion3d": (64, 1),
}
OPTIONS = {"timm:vit_small_patch16_224": {"img_size": 32}, "timm:test_vit": {"img_size": 32}}  # ViTs: fixed size
SIZE, FRAMES = 32, 8


def uint8(*shape, seed=0):
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def backbone(name, norm="gn", seed=0, **kw):
    torch.manual_seed(seed)
    net, dim = build_backbone(name, norm, options=OPTIONS.get(name), **kw)
    return net, dim


def sample(net, n=2):
    """Two frames, or two clips of FRAMES frames, SIZE²."""
    return uint8(n, FRAMES, SIZE, SIZE, 3) if net.video else uint8(n, SIZE, SIZE, 3)


def own_forward(name, net, x):
    """The network's own forward (classifier removed) on the prepared input, where it has one at this size;
    a video backbone's own forward pools over time too."""
    if name.startswith("timm:"):
        return net.net.forward_head(net.net.forward_features(net._prepare(x)), pre_logits=True)
    if name in ("s3d", "mvit_v2_s"):  # s3d's pool needs ≥ 7² maps; mvit pools its class token instead
        return None
    return net.net(net._prepare(x))


@pytest.mark.parametrize("name", LISTED)
def test_listed_backbone_builds_gives_its_shape_and_loads_its_saved_state_dict(name, tmp_path):
    """One build per backbone (building is most of the cost): its shape, the network's own computation,
    then its state dict saved to a file, the weights zeroed, and the file loaded back through the checked
    loader. (Loading through build_backbone(pretrained=...) is tested on the small models below.)"""
    dim, stride = LISTED[name]
    a, built_dim = backbone(name, "frozen_bn")
    assert built_dim == a.dim == dim and a.temporal_stride == stride
    assert trainable_batchnorm(a) == []
    x = sample(a, n=1 if a.video else 2)
    with torch.no_grad():
        out = a.eval()(x)
        assert out.shape == ((1, FRAMES // stride, dim) if a.video else (2, dim))
        want = own_forward(name, a, x)  # the staged run is the network's own computation
        if want is not None:
            torch.testing.assert_close(out.mean(1) if a.video else out, want)
    saved = {k: v.clone() for k, v in a.state_dict().items()}
    torch.save(saved, tmp_path / "weights.pt")
    with torch.no_grad():
        for t in a.state_dict().values():
            t.zero_()
    load_weights(a.net, read_weights(str(tmp_path / "weights.pt")), "weights.pt", name)
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in saved.items())
    with torch.no_grad():
        assert torch.equal(a(x), out)


BN_MODELS = ("resnet18", "timm:test_resnet", "timm:test_efficientnet", "s3d")  # BN2d, timm BN2d, BNAct2d, BN3d


def randomize_statistics(net):
    g = torch.Generator().manual_seed(3)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.mark.parametrize("name", BN_MODELS)
def test_norm_policies_on_every_kind_of_batchnorm_load_batchnorm_weights(name, tmp_path):
    """A BatchNorm weights file loads under every policy: frozen_bn keeps its statistics (the output is the
    BatchNorm model's in eval mode), gn/ln keep its affine parameters; none is left trainable."""
    bn, _ = backbone(name, "bn", allow_batchnorm=True)
    randomize_statistics(bn)
    path = tmp_path / "bn.pt"
    torch.save(bn.state_dict(), path)
    n_bn = len(trainable_batchnorm(bn))
    x = sample(bn)
    with torch.no_grad():
        want = bn.eval()(x)
    for policy in ("gn", "ln", "frozen_bn", "none"):
        net, _ = backbone(name, policy, seed=1, pretrained=str(path))
        assert trainable_batchnorm(net) == [], policy
        if policy == "frozen_bn":
            assert sum(isinstance(m, FrozenBatchNorm) for m in net.modules()) == n_bn
            with torch.no_grad():
                torch.testing.assert_close(net.eval()(x), want, rtol=1e-4, atol=1e-5)
        if policy == "gn":
            gns = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.GroupNorm)]
            assert len(gns) == n_bn
            assert all(torch.equal(m.weight, bn.state_dict()[f"{n}.weight"]) for n, m in gns)
        with torch.no_grad():
            assert torch.isfinite(net.train()(x)).all()


def test_frozen_batchnorm_and_groupnorm_of_1d_and_3d_batchnorm():
    bns = nn.Sequential(nn.BatchNorm1d(4), nn.BatchNorm3d(4))
    randomize_statistics(bns)
    x1, x3 = torch.randn(3, 4, 5), torch.randn(2, 4, 3, 5, 5)
    frozen = convert_norm(nn.Sequential(*[bns[0], bns[1]]), "frozen_bn")
    bns.eval()
    torch.testing.assert_close(frozen[0](x1), bns[0](x1))
    torch.testing.assert_close(frozen[1](x3), bns[1](x3))
    gn = convert_norm(nn.Sequential(nn.BatchNorm3d(8)), "gn")[0]
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 8


def test_an_unknown_batchnorm_variant_is_refused_not_guessed():
    class Odd(nn.BatchNorm2d):
        def forward(self, x):
            return super().forward(x) * 2

    with pytest.raises(ValueError, match="cannot convert Odd, a BatchNorm variant whose forward is unknown"):
        convert_norm(nn.Sequential(Odd(4)), "gn")


def test_trainable_batchnorm3d_is_refused():
    with pytest.raises(ValueError, match="leak of future information"):
        build_backbone("s3d", "bn")


def test_policy_on_a_model_without_batchnorm_is_a_stated_no_op():
    native, _ = backbone("timm:test_convnext", "bn")
    for policy in ("gn", "frozen_bn"):
        net, _ = backbone("timm:test_convnext", policy)
        assert [type(m) for m in net.modules()] == [type(m) for m in native.modules()]
        assert any(f"model.norm={policy}: timm:test_convnext has no BatchNorm, so nothing is converted" in n
                   for n in net.layout.notes), net.layout.notes


def test_a_video_backbone_sees_each_clip_alone_in_any_micro_chunks():
    """The documented chunk-boundary behaviour: a step's features are those of its own clip run alone."""
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="r3d_18", head="linear", clip_len=8, frame_chunk=8)
    model = build_model(cfg, 3).eval()
    frames = uint8(2, 16, 16, 16, 3)
    with torch.no_grad():
        feats = model.features(frames)
        assert feats.shape == (2, 2, 512)  # 16 frames at stride 8
        for b in range(2):
            for k in range(2):
                alone = model.backbone(frames[b:b + 1, 8 * k:8 * (k + 1)])
                torch.testing.assert_close(feats[b, k], alone[0, 0], rtol=1e-4, atol=1e-5)
        model.frame_chunk = None  # one call for all clips
        torch.testing.assert_close(model.features(frames), feats, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.clip_features(frames), feats.mean(1))


# -- one-line errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, message", [
    (["model.backbone=resnt18"], "model.backbone='resnt18' is unknown; close matches: resnet18,"),
    (["model.backbone=nfnet_l0"], "model.backbone='nfnet_l0' is unknown; close matches: timm:nfnet_l0,"),
    (["model.backbone=timm:nfnet_l9"], "model.backbone='timm:nfnet_l9' is unknown; close matches: timm:nfnet_l0,"),
    (["model.backbone=convnext_tiny", "model.freeze_stages=6"],
     "model.freeze_stages=6: 0 (none) to 5 (the whole backbone), counting the stem and stages 1..4"),
    (["model.drop_path=0.1"], "model.drop_path=0.1: resnet18 has no drop-path (stochastic depth)"),
    (["model.clip_len=4"], "model.clip_len=4: resnet18 sees each frame on its own; clip_len is for video backbones"),
    (["model.backbone=mc3_18", "model.clip_len=4", "model.frame_chunk=2"],
     "model.frame_chunk=2 must be a multiple of the clip length 4 (mc3_18 sees whole clips)"),
    (["model.backbone=r3d_18", "model.clip_len=4"], "model.clip_len=4 is not a multiple of r3d_18's temporal stride 8"),
])
def test_backbone_mistakes_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(overrides)
    assert str(e.value).startswith(message) and "\n" not in str(e.value), str(e.value)


def test_backbone_kwargs_reach_the_constructor():
    cfg, _ = load_config(["model.backbone=timm:test_vit", "+model.backbone_kwargs.img_size=32", "model.drop_path=0.1"])
    net, _ = build_backbone(cfg.model.backbone, options=cfg.model.backbone_kwargs, drop_path=cfg.model.drop_path)
    assert tuple(net.patch_embed.img_size) == (32, 32) and net.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)


def test_a_weights_file_that_does_not_fit_names_the_keys(tmp_path):
    net, _ = backbone("resnet18")
    state = net.state_dict()
    del state["layer4.1.conv2.weight"], state["layer4.1.bn2.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ConfigError) as e:
        build_backbone("resnet18", pretrained=str(path))
    assert str(e.value) == (
        f"model.pretrained='{path}' does not fit resnet18 (60 tensors): 2 missing (layer4.1.conv2.weight, "
        "layer4.1.bn2.bias), 1 unexpected (extra.weight), 1 of another shape (file vs model) (conv1.weight "
        "[64, 3, 3, 3] vs [64, 3, 7, 7])")


def test_a_mismatched_weights_file_stops_vt_train_before_any_process_group(tmp_path, capsys):
    from framework.train import main

    torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "w.pt")
    assert main([f"data.root={tmp_path}", f"model.pretrained={tmp_path / 'w.pt'}", f"run_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"config error: model.pretrained='{tmp_path / 'w.pt'}' does not fit resnet18") and \
        err.count("\n") == 1
    assert not torch.distributed.is_initialized()


def test_a_trained_video_models_checkpoint_initialises_the_backbone(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(head="linear"), 3)
    torch.save({"module": model.state_dict()}, tmp_path / "run.pt")  # a DeepSpeed model-states file's shape
    net, _ = backbone("resnet18", seed=1, pretrained=str(tmp_path / "run.pt"))
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in model.backbone.state_dict().items())


def test_timm_models_outside_the_known_layouts_still_run_as_their_own_forward():
    """MobileNetV3 runs its conv_head in forward_head (not the EfficientNet tail): split without it. A relative-
    position ViT fits no layout: it runs whole, as one stage, and says so."""
    for name, size, stages in (("timm:mobilenetv3_small_050", 64, 7), ("timm:test_vit_relpos", 160, 1)):
        net, _ = backbone(name)
        assert net.num_stages == stages
        x = uint8(2, size, size, 3)
        with torch.no_grad():
            torch.testing.assert_close(net.eval()(x), own_forward(name, net, x))
    assert any("split more coarsely: 1 stage(s), the whole model as one stage" in n for n in net.layout.notes)
    with pytest.raises(ConfigError, match=r"model.freeze_stages=2: 0 \(none\) to 1 \(the whole backbone\), "
                                          "counting the whole model as one stage"):
        backbone("timm:test_vit_relpos", freeze_stages=2)
