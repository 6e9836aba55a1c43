"""Tool presence AP and anticipation targets/metrics against values worked out by hand."""
import math

import numpy as np
import pytest

from framework.metrics import anticipation
from framework.metrics.ranking import average_precision, mean_ap


def test_average_precision_with_tied_scores_by_hand():
    # thresholds 0.9 → TP 1 of 1 (P 1, R .5); 0.8 (two frames, one threshold) → TP 2 of 3 (P 2/3, R 1);
    # 0.3 → recall unchanged. AP = .5·1 + .5·2/3 = 5/6. The unlabeled frame (−1) is dropped.
    target, score = np.array([1, 0, 1, 0, -1]), np.array([0.9, 0.8, 0.8, 0.3, 0.99])
    assert math.isclose(average_precision(target, score), 5 / 6)
    from sklearn.metrics import average_precision_score

    assert math.isclose(average_precision(target, score), average_precision_score(target[:4], score[:4]))


def test_mean_ap_leaves_out_tools_without_positives():
    targets = np.array([[1, 0], [0, 0], [1, 0]])
    scores = np.array([[0.9, 0.1], [0.1, 0.8], [0.8, 0.3]])
    r = mean_ap(targets, scores, ["grasper", "hook"])
    assert r["AP"]["grasper"] == 1.0 and math.isnan(r["AP"]["hook"]) and r["mAP"] == 1.0


def test_time_to_next_use_walks_backwards_and_clips_at_the_horizon():
    # one frame per minute, horizon 3: present at frames 2 and 7 of 9.
    # backwards: f8 3, f7 0, f6 1, f5 2, f4 3, f3 min(3, 4) = 3, f2 0, f1 1, f0 2
    present = np.zeros((9, 1), bool)
    present[[2, 7], 0] = True
    minutes = anticipation.time_to_next(present, fps=1 / 60, horizon=3.0)
    assert minutes[:, 0].tolist() == [2, 1, 0, 3, 3, 2, 1, 0, 3]
    assert anticipation.classes(minutes, 3.0)[:, 0].tolist() == [2, 2, 0, 1, 1, 2, 2, 0, 1]
    # at 2 frames per second each frame is 1/120 minute
    fast = anticipation.time_to_next(np.array([[False], [False], [True]]), fps=2, horizon=3.0)
    assert np.allclose(fast[:, 0], [2 / 120, 1 / 120, 0])


def test_anticipation_errors_pool_frames_per_instrument_then_average():
    h = 3.0
    target = np.array([[2, 0], [1, 3], [0, 3], [3, 3], [3, 3], [2, 3], [1, 3], [0, 3], [3, 3]], float)
    pred = np.array([[2.5, 0.2], [1, 3], [0.5, 3], [2, 3], [3, 3], [1, 3], [1.5, 3], [0, 3], [2.8, 3]])
    r = anticipation.errors(pred, target, h)
    # tool 0: |err| = .5 0 .5 1 0 1 .5 0 .2; inside (0<y<3) rows 0,1,5,6 → .5 0 1 .5 → inMAE .5;
    # outside (y=3) rows 3,4,8 → 1 0 .2 → outMAE .4; wMAE .45; no 0<y<.3 → eMAE NaN;
    # predictions in (.3, 2.7): rows 0,1,2,3,5,6 → .5 0 .5 1 1 .5 → pMAE 3.5/6
    # tool 1: never inside the horizon → inMAE, wMAE NaN; outMAE 0; pMAE NaN (no prediction in range)
    pt = r["per_instrument"]
    assert math.isclose(pt["inMAE"][0], 0.5) and math.isclose(pt["outMAE"][0], 0.4)
    assert math.isclose(pt["wMAE"][0], 0.45) and math.isnan(pt["eMAE"][0]) and math.isclose(pt["pMAE"][0], 3.5 / 6)
    assert math.isnan(pt["inMAE"][1]) and pt["outMAE"][1] == 0.0
    # averaged over the instruments where each is defined
    assert math.isclose(r["inMAE"], 0.5) and math.isclose(r["outMAE"], 0.2) and math.isclose(r["wMAE"], 0.45)
    assert math.isnan(r["eMAE"])


def test_emae_counts_imminent_uses_and_unlabeled_frames_are_dropped():
    # 10 frames a minute, horizon 2 min: y = 0.2 0.1 0 → eMAE over 0 < y < 0.2 is the 0.1 row only
    target = np.array([[0.2], [0.1], [0.0], [np.nan]])
    pred = np.array([[0.5], [0.4], [0.0], [9.0]])
    r = anticipation.errors(pred, target, 2.0)
    assert math.isclose(r["eMAE"], 0.3) and math.isclose(r["inMAE"], 0.3)
    clipped = anticipation.errors(np.array([[5.0]]), np.array([[2.0]]), 2.0, clip=True)
    assert clipped["outMAE"] == 0.0


@pytest.mark.parametrize("horizon", [1.0, 3.0])
def test_targets_are_zero_while_present_and_the_horizon_after_the_last_use(horizon):
    present = np.array([[True], [False], [False]])
    minutes = anticipation.time_to_next(present, fps=1 / 60, horizon=horizon)
    assert minutes[0, 0] == 0 and minutes[-1, 0] == horizon
