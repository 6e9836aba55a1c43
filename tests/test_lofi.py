"""LoFi: the schedule of fidelities, the batches it composes, the constant-memory rule (refused when broken,
measured when kept) and the final stage's config."""
import math

import pytest
import torch

from bench.tal import full_batch, measure
from framework.config import ConfigError, LofiConfig, load_config
from framework.lofi import FULL, Fidelity, Schedule, reduce_time, resize

S, T_LOFI, ST = [1, 2.0], [4, 1.0], [2, 2 ** 0.5]


def batch():
    return full_batch(2, 32, 64, 64)


def shapes(schedule, positions):
    out = []
    for epoch, step in positions:
        f = schedule.at(epoch, step)
        b = reduce_time(batch(), f.temporal)
        out.append(tuple(resize(b.frames, f).shape))
    return out


def test_the_long_cycle_changes_fidelity_at_epoch_boundaries_in_order():
    schedule = Schedule(LofiConfig(enabled=True, fidelities=[S, T_LOFI, ST], cycle="long"))
    got = shapes(schedule, [(0, 0), (0, 7), (1, 8), (2, 9), (3, 10)])
    assert got == [(2, 32, 32, 32, 3), (2, 32, 32, 32, 3), (2, 8, 64, 64, 3), (2, 16, 45, 45, 3), (2, 32, 32, 32, 3)]


def test_the_short_cycle_changes_fidelity_every_c_batches():
    schedule = Schedule(LofiConfig(enabled=True, fidelities=[S, T_LOFI], cycle="short", every=3))
    assert [schedule.at(0, s).temporal for s in range(8)] == [1, 1, 1, 4, 4, 4, 1, 1]
    assert Schedule(LofiConfig(enabled=False)).at(5, 5) == FULL


def test_a_reduced_batch_keeps_every_r_th_frame_and_counts_what_it_kept():
    b = batch()
    b.valid[1, 21:] = False  # a video that ends at frame 21 of the window
    b.lengths[1] = 21
    r = reduce_time(b, 4)
    assert r.frames.shape[1] == 8 and r.frame[0].tolist() == list(range(0, 32, 4))
    assert torch.equal(r.frames, b.frames[:, ::4]) and r.valid[1].sum() == 6 and r.lengths.tolist() == [8, 6]
    small = resize(b.frames, Fidelity(1, 2.0))
    assert small.dtype == torch.uint8 and small.shape == (2, 32, 32, 32, 3)
    # antialiased: a 2 × 2 block of one value shrinks to that value
    assert torch.equal(resize(torch.full((1, 1, 4, 4, 3), 77, dtype=torch.uint8), Fidelity(1, 2.0)),
                       torch.full((1, 1, 2, 2, 3), 77, dtype=torch.uint8))


@pytest.mark.parametrize("overrides, message", [
    (["lofi.fidelities=[[1,2],[2,1]]"], "lofi.fidelities must keep r_t · r_s² equal"),
    (["lofi.fidelities=[[3,1]]", "data.seq_len=16"], "data.seq_len=16 is not a multiple of lofi's temporal factor 3"),
    (["lofi.fidelities=[[0.5,1]]"], "an integer r_t >= 1"),
    (["lofi.cycle=medium"], "lofi.cycle='medium': long or short"),
])
def test_lofi_configs_that_break_the_rule_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(["lofi.enabled=true", *overrides])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_memory_per_batch_stays_within_a_band_across_fidelities():
    """The rule (batch size fixed, r_t · r_s² fixed) gives every LoFi fidelity the same step peak within ±15% of
    their mean and a quarter of full fidelity's saved activations (±15%), and full fidelity a clearly larger peak:
    ResNet-18-GN + the localization head, one batch of 2 × 32 frames of 64² composed at each fidelity, measured
    in a fresh process (bench/tal.py's step_memory)."""
    model = {"backbone": "resnet18", "head": "actionformer", "hidden": 32, "levels": 3, "snippet_len": 2,
             "snippet_stride": 2}
    full, *lofi = measure(model, [2, 32, 64, 64], [[1, 1], S, T_LOFI, ST])
    peaks = [m["peak"] for m in lofi]
    mean = sum(peaks) / len(peaks)
    assert all(abs(p / mean - 1) <= 0.15 for p in peaks), (full, lofi)
    assert all(abs(m["saved"] / (full["saved"] / 4) - 1) <= 0.15 for m in lofi), (full, lofi)
    assert full["peak"] > 1.5 * mean, (full, lofi)
    assert [m["shape"] for m in lofi] == [[2, 32, 32, 32], [2, 8, 64, 64], [2, 16, 45, 45]]


def test_the_final_stage_freezes_the_whole_encoder_and_trains_a_new_head_at_full_fidelity(tmp_path):
    from framework.lofi import head_stage

    cfg, raw = load_config(["experiment=tal", "lofi.enabled=true", "lofi.head_steps=7", f"run_dir={tmp_path}/run"])
    head, _ = head_stage(cfg, raw, tmp_path / "w.pt")
    assert head.model.pretrained == str(tmp_path / "w.pt") and head.model.freeze_stages == 5  # stem, layer1..4
    assert head.trainer.max_steps == 7 and not head.lofi.enabled and head.run_dir == f"{tmp_path}/run/head"
    assert head.model.head == cfg.model.head and head.task.keys() == cfg.task.keys()
    assert math.isclose(Fidelity(2, 2 ** 0.5).memory, 0.25)
