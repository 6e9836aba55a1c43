"""The phase-recognition numbers against values worked out by hand (the arithmetic is in the comments)."""
import math

import numpy as np
import pytest

from framework.metrics import cholec80
from framework.metrics.classification import macro, per_video
from framework.metrics.phase import phase_report

NAN = float("nan")


def close(a, b, tol=1e-9):
    if isinstance(b, float) and math.isnan(b):
        return math.isnan(a)
    return abs(a - b) <= tol


# gt two runs of 6 rows (phases 1, 2), window 3 rows. diff = pred − gt = [0,0,0,0,0,1, 0,0,2,-1,0,1].
# Run of 1: the tail mask of its last 3 rows [0,0,1] is [F,F,T]: corrected forgives row 5; official applies
# the mask to the first 3 rows and forgives row 2 (already 0). Run of 2 [0,0,2,-1,0,1]: no −1 in its first 3
# rows; the tail mask [F,F,T] forgives row 11 (corrected), or row 8 (official, a +2 no rule forgives).
GT = np.array([1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2])
PRED = np.array([1, 1, 1, 1, 1, 2, 2, 2, 4, 1, 2, 3])
UPDATED = {"none": [0, 0, 0, 0, 0, 1, 0, 0, 2, -1, 0, 1],
           "official": [0, 0, 0, 0, 0, 1, 0, 0, 0, -1, 0, 1],
           "corrected": [0, 0, 0, 0, 0, 0, 0, 0, 2, -1, 0, 0]}


@pytest.mark.parametrize("mode", cholec80.MODES)
def test_relaxation_modes_differ_where_the_tail_rule_is_buggy(mode):
    got = cholec80.relaxed_diff(GT, PRED, 3, cholec80.CHOLEC80, mode)
    assert got.tolist() == UPDATED[mode]


# Phase 1: union of gt {0..5} and pred {0..4, 9} = 7 rows, |pred| = 6, |gt| = 6.
# Phase 2: union of gt {6..11} and pred {5, 6, 7, 10} = 7 rows, |pred| = 4, |gt| = 6.
# TP = rows of the union whose updated diff is 0:
#   none:      phase 1 {0..4} = 5, phase 2 {6, 7, 10} = 3
#   official:  phase 1 5,         phase 2 {6, 7, 8, 10} = 4
#   corrected: phase 1 {0..5} = 6, phase 2 {5, 6, 7, 10, 11} = 5 (precision 5/4: above 100, clipped later)
# accuracy = rows with updated diff 0: none 8, official 9, corrected 10 of 12
EXPECTED = {
    "none": ([500 / 7, 300 / 7], [500 / 6, 75.0], [500 / 6, 50.0], 800 / 12),
    "official": ([500 / 7, 400 / 7], [500 / 6, 100.0], [500 / 6, 400 / 6], 900 / 12),
    "corrected": ([600 / 7, 500 / 7], [100.0, 125.0], [100.0, 500 / 6], 1000 / 12),
}


@pytest.mark.parametrize("mode", cholec80.MODES)
def test_per_video_scores_count_true_positives_over_the_union(mode):
    r = cholec80.evaluate_video(GT, PRED, 7, 3, cholec80.CHOLEC80, mode)
    jacc, prec, rec, acc = EXPECTED[mode]
    for key, want in (("jaccard", jacc), ("precision", prec), ("recall", rec)):
        assert all(close(a, b) for a, b in zip(r[key][:2], want)), (key, r[key])
        assert np.isnan(r[key][2:]).all()  # phases 3..7 are absent from this ground truth: NaN
    assert close(r["accuracy"], acc)


def test_a_phase_never_predicted_but_relaxed_gets_infinite_precision_clipped_to_100():
    # gt 1,1,1,2,2,2 predicted all 1: the run of 2 is shorter than the window, so t = 3 and its head rule
    # forgives the three −1 errors. Phase 2: TP 3 of a union of 3, |pred| = 0 → precision 300/0 = Inf.
    gt, pred = np.array([1, 1, 1, 2, 2, 2]), np.array([1, 1, 1, 1, 1, 1])
    r = cholec80.evaluate_video(gt, pred, 2, 10, cholec80.CHOLEC80, "official")
    assert r["precision"][1] == np.inf and r["jaccard"].tolist() == [100.0, 100.0]
    assert r["recall"].tolist() == [200.0, 100.0] and r["accuracy"] == 100.0  # phase 1: TP 6 over |gt| 3
    agg = cholec80.aggregate([r])
    assert agg["precision"]["per_phase"] == [100.0, 100.0] and agg["recall"]["per_phase"] == [100.0, 100.0]
    # unrelaxed: phase 2 has TP 0 and no prediction → 0/0 = NaN precision, left out of the NaN-aware mean
    u = cholec80.evaluate_video(gt, pred, 2, 10, cholec80.CHOLEC80, "none")
    assert np.isnan(u["precision"][1]) and u["jaccard"].tolist() == [50.0, 0.0] and u["recall"][1] == 0.0
    agg = cholec80.aggregate([u])
    assert agg["precision"]["mean"] == 50.0 and agg["precision"]["std"] == 0.0  # one value: MATLAB's std is 0


def test_offsets_follow_the_number_of_phases():
    # a run of phase 6 predicted as 4: diff −2 at its head. Cholec80 forgives −2 for phases 6 and 7;
    # M2CAI16 (TrocarPlacement first, everything shifted) only for 7 and 8.
    gt, pred = np.array([4, 4, 4, 6, 6, 6]), np.array([4, 4, 4, 4, 4, 6])
    c80 = cholec80.evaluate_video(gt, pred, 7, 10, cholec80.offsets_for(7), "official")
    m2c = cholec80.evaluate_video(gt, pred, 8, 10, cholec80.offsets_for(8), "official")
    assert c80["accuracy"] == 100.0 and close(m2c["accuracy"], 400 / 6)
    assert cholec80.offsets_for(5).name == "general" and cholec80.window_rows(1.0) == 10
    assert cholec80.window_rows(25.0) == 250  # the window counts rows: 250 at 25 rows/s


def test_main_m_aggregation_by_hand():
    """Two videos, three phases. Clip at 100 (Inf too), NaN-aware means over videos; Jaccard/recall: plain
    mean over phases; precision: NaN-aware; std with N−1; accuracy over videos."""
    a = {"jaccard": np.array([50, 100, NAN]), "precision": np.array([np.inf, 80, NAN]),
         "recall": np.array([120, 60, NAN]), "accuracy": 90.0}
    b = {"jaccard": np.array([70, NAN, 30]), "precision": np.array([NAN, 40, 20]),
         "recall": np.array([50, NAN, 10]), "accuracy": 70.0}
    r = cholec80.aggregate([a, b])
    # Jaccard per phase [60, 100, 30]: mean 63.33, squared deviations 11.11 + 1344.44 + 1111.11 = 2466.67, /2
    assert r["jaccard"]["per_phase"] == [60.0, 100.0, 30.0]
    assert close(r["jaccard"]["mean"], 190 / 3) and close(r["jaccard"]["std"], math.sqrt(7400 / 6))
    # precision per phase: Inf→100 in video a, NaN skipped: [100, 60, 20] → mean 60, std 40
    assert r["precision"]["per_phase"] == [100.0, 60.0, 20.0]
    assert close(r["precision"]["mean"], 60.0) and close(r["precision"]["std"], 40.0)
    # recall: 120 → 100: per phase [75, 60, 10] → mean 48.33, std sqrt(2316.67 / 2)
    assert r["recall"]["per_phase"] == [75.0, 60.0, 10.0]
    assert close(r["recall"]["mean"], 145 / 3) and close(r["recall"]["std"], math.sqrt(6950 / 6))
    assert close(r["accuracy"]["mean"], 80.0) and close(r["accuracy"]["std"], math.sqrt(200))


def test_a_phase_absent_from_every_video_makes_jaccard_nan_but_not_precision():
    v = {"jaccard": np.array([50.0, NAN]), "precision": np.array([80.0, NAN]), "recall": np.array([40.0, NAN]),
         "accuracy": 60.0}
    r = cholec80.aggregate([v])
    assert math.isnan(r["jaccard"]["mean"]) and math.isnan(r["recall"]["mean"])
    assert r["precision"]["mean"] == 80.0


def test_macro_metrics_by_hand_and_as_scikit_learn_computes_them():
    # unlabeled last frame dropped; gt [0,0,1,1,2], pred [0,1,1,1,0]
    # class 0: TP 1, |pred| 2, |gt| 2 → P 1/2, R 1/2, J 1/3, F1 1/2
    # class 1: TP 2, |pred| 3, |gt| 2 → P 2/3, R 1,   J 2/3, F1 4/5
    # class 2: TP 0, |pred| 0, |gt| 1 → P 0 (undefined → 0), R 0, J 0, F1 0
    gt, pred = np.array([0, 0, 1, 1, 2, -1]), np.array([0, 1, 1, 1, 0, 2])
    m = macro(gt, pred, 4)  # class 3 is in neither: not part of the macro mean
    assert close(m["precision"], (1 / 2 + 2 / 3) / 3) and close(m["recall"], 0.5)
    assert close(m["jaccard"], 1 / 3) and close(m["f1"], 1.3 / 3)
    assert close(m["accuracy"], 0.6) and close(m["balanced_accuracy"], 0.5)
    from sklearn import metrics as sk

    g, p = gt[:5], pred[:5]
    assert close(m["precision"], sk.precision_score(g, p, average="macro", zero_division=0))
    assert close(m["jaccard"], sk.jaccard_score(g, p, average="macro", zero_division=0))
    assert close(m["f1"], sk.f1_score(g, p, average="macro", zero_division=0))
    assert close(m["balanced_accuracy"], sk.balanced_accuracy_score(g, p))


def test_a_class_predicted_but_never_true_counts_as_zero_and_one_class_only_scores_one():
    m = macro(np.array([0, 0]), np.array([0, 1]), 2)
    assert m["precision"] == 0.5 and m["recall"] == 0.25 and m["balanced_accuracy"] == 0.5
    one = macro(np.array([2, 2, 2]), np.array([2, 2, 2]), 3)
    assert one["f1"] == 1.0 and one["jaccard"] == 1.0 and one["balanced_accuracy"] == 1.0
    with pytest.raises(ValueError, match="no labelled frames"):
        macro(np.array([-1, -1]), np.array([0, 1]), 2)


def test_per_video_means_and_std_over_videos():
    videos = [(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])), (np.array([0, 0]), np.array([1, 1]))]
    r = per_video(videos, 2)
    # accuracies 1 and 0: mean 0.5, std sqrt(0.5) (N−1); F1: 1 and 0 (video 2: classes {0, 1}, both 0)
    assert r["accuracy"]["mean"] == 0.5 and close(r["accuracy"]["std"], math.sqrt(0.5))
    assert r["f1"]["mean"] == 0.5


def test_phase_report_labels_every_convention_and_skips_unlabeled():
    videos = {"a": (np.array([0, 0, 0, 1, 1, 1, -1]), np.array([0, 0, 0, 0, 1, 1, 1]))}
    r = phase_report(videos, ["p0", "p1"], rows_per_second=0.1)  # window 1 row
    assert r["frames"] == 6 and r["videos"] == 1
    for key in ("protocol_official", "protocol_corrected", "protocol_none", "per_video", "frame_pooled"):
        assert r[key]["convention"], key
    assert "tail-rule indexing bug kept" in r["protocol_official"]["convention"]
    # window 1: the run of p1 starts with a −1 (forgiven by the head rule in the relaxed modes)
    assert r["protocol_official"]["accuracy"]["mean"] == 100.0 and close(r["protocol_none"]["accuracy"]["mean"],
                                                                       500 / 6)
    assert r["confusion"]["rows_true_columns_predicted"] == [[3, 0], [1, 2]]
    with pytest.raises(ValueError, match="no labelled frames"):
        phase_report({"a": (np.array([-1, -1]), np.array([0, 1]))}, ["p0", "p1"], 1.0)
