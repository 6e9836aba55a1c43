"""Normalisation policies, the BatchNorm refusal, and the leakage probe (both ways)."""
import subprocess
import sys

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from framework.config import ModelConfig
from framework.models import build_model
from framework.models.backbone import build_backbone
from framework.models.norm import convert_norm, gn_groups
from framework.probe import TOLERANCE, probe_leakage
from tests.conftest import REPO


def count(module, kind):
    return sum(isinstance(m, kind) for m in module.modules())


@pytest.mark.parametrize("policy, kind", [("gn", nn.GroupNorm), ("ln", nn.GroupNorm),
                                          ("frozen_bn", FrozenBatchNorm2d), ("none", nn.Identity)])
def test_conversion_replaces_every_batchnorm(policy, kind):
    bn_net, _ = build_backbone("resnet18", "bn", allow_batchnorm=True)
    n_bn = count(bn_net, nn.BatchNorm2d)
    net, dim = build_backbone("resnet18", policy)
    assert count(net, nn.BatchNorm2d) == 0 and count(net, kind) >= n_bn and dim == 512
    x = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)  # the backbone takes uint8 frames, NHWC
    assert net(x).shape == bn_net(x).shape == (2, 512)
    params = sum(p.numel() for p in net.parameters())
    bn_params = sum(p.numel() for p in bn_net.parameters())
    bn_affine = sum(m.weight.numel() + m.bias.numel() for m in bn_net.modules() if isinstance(m, nn.BatchNorm2d))
    # gn/ln keep the affine parameters; frozen BN and none drop them from the trainable set
    assert params == (bn_params if policy in ("gn", "ln") else bn_params - bn_affine)


def test_conversion_keeps_pretrained_affine_and_statistics():
    bn = nn.BatchNorm2d(64)
    bn.weight.data.uniform_(0.5, 2)
    bn.bias.data.uniform_(-1, 1)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    holder = nn.Sequential(bn)
    gn = convert_norm(nn.Sequential(bn), "gn")[0]
    assert gn.num_groups == gn_groups(64) == 32
    torch.testing.assert_close(gn.weight, bn.weight)
    frozen = convert_norm(holder, "frozen_bn")[0]
    x = torch.randn(4, 64, 5, 5)
    torch.testing.assert_close(frozen(x), bn.eval()(x))


def test_trainable_batchnorm_is_refused_with_the_explanation():
    with pytest.raises(ValueError, match="leak of future information.*model.norm=gn"):
        build_backbone("resnet18", "bn")


def small_model(norm, head="lstm", dropout=0.0):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet18", norm=norm, allow_batchnorm=norm == "bn", head=head, hidden=16,
                      dropout=dropout)
    return build_model(cfg, 4)


FRAMES = torch.randint(0, 256, (3, 6, 32, 32, 3), dtype=torch.uint8)


@pytest.mark.parametrize("norm", ["gn", "ln", "frozen_bn", "none"])
@pytest.mark.parametrize("head", ["lstm", "tcn", "transformer"])
def test_sync_free_models_do_not_leak(norm, head):
    report = probe_leakage(small_model(norm, head, dropout=0.2), FRAMES, t=2)
    for mode in ("train", "eval"):
        assert report[mode]["future"] <= TOLERANCE and report[mode]["other_sequences"] <= TOLERANCE, report


def test_batchnorm_leaks_in_train_mode_only():
    report = probe_leakage(small_model("bn"), FRAMES, t=2)
    assert report["train"]["future"] > 1e-3 and report["train"]["other_sequences"] > 1e-3, report
    assert report["eval"]["future"] <= TOLERANCE and report["eval"]["other_sequences"] <= TOLERANCE, report


@pytest.mark.parametrize("norm, leak", [("gn", False), ("bn", True)])
def test_probe_cli(tiny_data, norm, leak):
    proc = subprocess.run([sys.executable, "-m", "framework.probe", "leakage", f"data.root={tiny_data}",
                           f"model.norm={norm}", f"model.allow_batchnorm={norm == 'bn'}", "data.seq_len=6"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ("LEAK" in proc.stdout) == leak, proc.stdout
