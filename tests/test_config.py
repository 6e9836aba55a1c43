"""Every config mistake is one clear line, before any heavy work."""
import subprocess
import sys

import pytest

from framework.config import ConfigError, load_config
from tests.conftest import REPO


def test_demo_experiment_composes():
    cfg, _ = load_config(["experiment=demo"])
    assert cfg.name == "demo" and cfg.run_dir == "runs/demo"
    assert cfg.data.batch_size == 4 and cfg.model.head == "lstm"


def test_frame_only_ablation_composes():
    cfg, _ = load_config(["experiment=demo_frame_only"])
    assert cfg.model.head == "linear" and cfg.trainer.max_steps == 400 and cfg.run_dir == "runs/demo_frame_only"


@pytest.mark.parametrize("override, message", [
    ("data.foo=1", "data.foo: Key 'foo' not in 'DataConfig'"),
    ("data.batch_size=abc", "data.batch_size: Value 'abc' of type 'str' could not be converted to Integer"),
    ("deepspeed.zero_stage=4", "deepspeed.zero_stage must be 0, 1, 2 or 3, got 4"),
    ("model.frame_chunk=5", "data.seq_len=16 is not a multiple of model.frame_chunk=5"),
    ("model=nope", "Could not find 'model/nope'"),
    ("model.head=transformerz", "model.head='transformerz': choose one of"),
    ("model.norm=bn", "model.norm=bn: the model has trainable BatchNorm layers"),
    ("model.norm=batch", "model.norm='batch': choose one of"),
    ("trainer.lr=-1", "trainer.lr must be > 0"),
])
def test_bad_config_is_one_clear_line(override, message):
    with pytest.raises(ConfigError) as err:
        load_config([override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_reports_config_error_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "framework.train", "deepspeed.zero_stage=4"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "config error: deepspeed.zero_stage must be 0, 1, 2 or 3, got 4"


def test_launcher_fails_once_before_starting_processes():
    proc = subprocess.run([sys.executable, "-m", "launch.local", "--nproc=2", "data.sequence=3"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["config error: data.sequence: Key 'sequence' not in 'DataConfig'"]


@pytest.mark.parametrize("model, head", [("resnet18_gru", "gru"), ("resnet18_tcn", "tcn"),
                                         ("resnet18_transformer", "transformer")])
def test_head_configs_compose(model, head):
    cfg, _ = load_config([f"model={model}"])
    assert cfg.model.head == head and cfg.model.backbone == "resnet18"


def test_transformer_width_must_split_into_heads():
    with pytest.raises(ConfigError, match="multiple of model.attention_heads=4"):
        load_config(["model=resnet18_transformer", "model.hidden=30"])
