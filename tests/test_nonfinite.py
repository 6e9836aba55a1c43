"""Non-finite losses and gradient norms (framework/nonfinite.py) on real DeepSpeed engines and a real run
(tests/robust_check.py, one process): no step with a non-finite gradient is applied, without a device sync
per step; stop names the step, skip counts and stops after trainer.nonfinite_patience in a row; a checkpoint
of non-finite weights is never written."""
import pytest

CONFIGS = ["zero0_fp32", "zero0_bf16", "zero1_fp32"]


@pytest.mark.parametrize("config", CONFIGS)
def test_a_non_finite_step_is_not_applied_and_the_next_one_is(robust_check, config):
    seen = robust_check[config]
    assert seen["own_flag"] == (config == "zero0_fp32")  # DeepSpeed checks nothing at ZeRO 0 fp32: our flag does
    assert seen["kept"], "weights and optimizer state after the NaN step equal those before it, bitwise"
    assert seen["applied_after"] and seen["skipped"] == 1


@pytest.mark.parametrize("config", CONFIGS)
def test_stop_names_the_step_and_skip_stops_after_patience_in_a_row(robust_check, config):
    seen = robust_check[config]
    assert seen["stop"].startswith("non-finite loss or gradient norm at step 2 (trainer.nonfinite=stop)")
    assert seen["in_a_row"].startswith("3 non-finite steps in a row (steps 4-6; trainer.nonfinite_patience=3), "
                                       "4 skipped in all")


@pytest.mark.parametrize("config", CONFIGS)
def test_a_checkpoint_of_non_finite_weights_is_not_written(robust_check, config):
    assert robust_check[config]["refused_save"].startswith("the weights are not finite at step 3 (0.weight)")


def test_a_run_that_goes_non_finite_stops_with_one_line_naming_the_step(robust_check):
    """vt-train with pretrained weights that hold a NaN: every step's loss is NaN from the first."""
    seen = robust_check["nan_pretrained"]
    assert seen["code"] == 1
    assert seen["lines"] == ["vt-train: stopped: non-finite loss or gradient norm at step 1 (trainer.nonfinite=stop): "
                             "the step was not applied and the run stops; the last complete checkpoint is kept "
                             "(trainer.nonfinite=skip drops such steps)"]
    assert seen["checkpoints"] == []  # trainer.checkpoint_every=1: the step-1 checkpoint was not written
