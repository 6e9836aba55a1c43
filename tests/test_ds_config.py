"""deepspeed.config_file and deepspeed.extra: any DeepSpeed option passes through to the engine's config; a key
the framework sets may only repeat its value, and anything else is one line naming the option to use."""
import json

import pytest

from framework.config import ConfigError, load_config
from framework.engine import ds_config
from launch.cli import main as launch


def merged(*overrides: str) -> dict:
    cfg, _ = load_config(list(overrides))
    return ds_config(cfg)


def test_without_user_options_the_config_is_the_generated_one():
    assert merged("deepspeed.zero_stage=2", "data.batch_size=3") == {
        "train_micro_batch_size_per_gpu": 3, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
        "bf16": {"enabled": False}, "zero_optimization": {"stage": 2}, "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9, "wall_clock_breakdown": False}


def test_extra_merges_into_the_sections_the_framework_writes():
    ds = merged("deepspeed.zero_stage=2", "+deepspeed.extra.zero_optimization.overlap_comm=true",
                "+deepspeed.extra.zero_optimization.reduce_bucket_size=500000", "+deepspeed.extra.steps_per_print=5",
                "+deepspeed.extra.zero_optimization.stage=2")  # repeating the framework's value is fine
    assert ds["zero_optimization"] == {"stage": 2, "overlap_comm": True, "reduce_bucket_size": 500000}
    assert ds["steps_per_print"] == 5  # a console setting: the user's value wins
    assert ds["gradient_clipping"] == 1.0


def test_config_file_then_extra(tmp_path):
    f = tmp_path / "ds.json"
    f.write_text(json.dumps({"zero_optimization": {"reduce_bucket_size": 100, "overlap_comm": False},
                             "communication_data_type": "fp32"}))
    ds = merged("deepspeed.zero_stage=1", f"deepspeed.config_file={f}",
                "+deepspeed.extra.zero_optimization.overlap_comm=true")
    assert ds["zero_optimization"] == {"stage": 1, "reduce_bucket_size": 100, "overlap_comm": True}  # extra wins
    assert ds["communication_data_type"] == "fp32"


@pytest.mark.parametrize("override, message", [
    ("+deepspeed.extra.zero_optimization.stage=2", "deepspeed.extra: zero_optimization.stage=2 contradicts "
     "zero_optimization.stage=0 set by the framework; set deepspeed.zero_stage instead"),
    ("+deepspeed.extra.bf16=true", "deepspeed.extra: bf16=true contradicts bf16.enabled=false set by the framework; "
     "set deepspeed.bf16 instead"),
    ("+deepspeed.extra.gradient_accumulation_steps=4", "contradicts gradient_accumulation_steps=1 set by the "
     "framework; set deepspeed.grad_accum instead"),
    ("+deepspeed.extra.train_micro_batch_size_per_gpu=8", "set data.batch_size instead"),
    ("+deepspeed.extra.gradient_clipping=0.5", "set deepspeed.grad_clip instead"),
    ("+deepspeed.extra.zero_allow_untested_optimizer=false", "the framework needs this value"),
    ("+deepspeed.extra.optimizer.type=Adam", "deepspeed.extra: `optimizer` cannot be set here: the optimizer comes "
     "from trainer.optimizer"),
    ("+deepspeed.extra.scheduler.type=WarmupLR", "`scheduler` cannot be set here"),
    ("+deepspeed.extra.train_batch_size=64", "the global batch is data.batch_size x deepspeed.grad_accum"),
    ("deepspeed.extra.zero_optimization.overlap_comm=true", "deepspeed.extra.zero_optimization: a DeepSpeed option "
     "the config does not have yet needs Hydra's `+`"),
    ("deepspeed.config_file=/nonexistent/ds.json", "deepspeed.config_file=/nonexistent/ds.json: no such file"),
])
def test_a_contradiction_is_one_line(override, message):
    with pytest.raises(ConfigError) as err:
        load_config([override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("content, message", [
    ('{"zero_optimization": {"stage": 2}}', "zero_optimization.stage=2 contradicts zero_optimization.stage=0"),
    ('{"zero_optimization": 1', "is not valid JSON: Expecting"),
    ('[1, 2]', "must hold a JSON object, not list"),
])
def test_a_bad_config_file_is_one_line(tmp_path, content, message):
    f = tmp_path / "ds.json"
    f.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_config([f"deepspeed.config_file={f}"])
    assert f"deepspeed.config_file={f}" in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_the_launcher_refuses_a_contradiction_before_starting_anything(capsys, tmp_path):
    code = launch(["--nproc=2", f"run_dir={tmp_path / 'run'}", "+deepspeed.extra.bf16.enabled=true"])
    assert code == 2
    assert capsys.readouterr().err.strip() == ("config error: deepspeed.extra: bf16.enabled=true contradicts "
                                               "bf16.enabled=false set by the framework; set deepspeed.bf16 instead")
    assert not (tmp_path / "run").exists()


def test_deepspeed_runs_with_the_users_options(engine_check):
    """A Trainer with docs/examples/deepspeed.json and a deepspeed.extra override at ZeRO 2: DeepSpeed's engine
    parsed the user's options (extra over the file), and it trains."""
    (row,) = [r for r in engine_check if r["check"] == "passthrough"]
    assert row["zero_stage"] == 2 and row["optimizer"] == "DeepSpeedZeroOptimizer"
    assert row["overlap_comm"] is True and row["contiguous_gradients"] is True
    assert row["reduce_bucket_size"] == 123456  # deepspeed.extra wins over the file's 20000000
    assert row["allgather_bucket_size"] == 20000000 and row["communication_data_type"] == "torch.float32"
    assert row["finite_losses"] and row["tensors_trained"] > 0
