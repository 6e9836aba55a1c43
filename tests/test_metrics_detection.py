"""Detection mAP (ActivityNet's eval_detection.py) and 1-D NMS / Soft-NMS (ActionFormer's ops): hand-worked
cases, and the mAP against a brute-force reference on random cases."""
import math

import numpy as np
import pytest

from framework.metrics.detection import THRESHOLDS, Detection, detection_ap, detection_report, interpolated_ap, tiou
from framework.metrics.nms import batched_nms, nms, soft_nms

ANET, THUMOS = THRESHOLDS["anet"], THRESHOLDS["thumos"]


def d(video, label, start, end, score):
    return Detection(video, label, float(start), float(end), float(score))


def test_tiou_by_hand():
    assert np.allclose(tiou((0, 10), np.array([[5, 15], [0, 10], [20, 30], [2, 4]])), [5 / 15, 1, 0, 0.2])


def test_thresholds_are_the_conventions():
    assert np.allclose(ANET, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
    assert np.allclose(THUMOS, [0.3, 0.4, 0.5, 0.6, 0.7])


def test_interpolation_by_hand():
    # TP, FP, TP of 2 GT: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 → 1/2 · 1 + 1/2 · 2/3
    assert math.isclose(interpolated_ap(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])), 0.5 + 1 / 3)
    # recall never reaches 1: the rest of the curve counts as precision 0
    assert math.isclose(interpolated_ap(np.array([1.0]), np.array([0.5])), 0.5)


def test_duplicates_fall_through_to_the_next_best_ground_truth_or_become_false_positives():
    gt = {"v": [(0, 10, "a"), (2, 12, "a")]}
    # the first detection takes GT 1 (tIoU 1); the second is closer to GT 1 (0.905) than to GT 2 (8.5/12 = 0.708):
    # GT 1 is taken, so it falls through to GT 2 where 0.708 >= t (t <= 0.7), else it is a false positive
    r = detection_ap(gt, [d("v", "a", 0, 10, 0.9), d("v", "a", 0.5, 10.5, 0.8)], ANET)
    assert np.allclose(r["ap"][:, 0], [1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert math.isclose(r["average_mAP"], 0.75)
    # the better-scored duplicate is the worse segment: at t = 0.95 it misses (0.9) and the exact one, ranked
    # second, takes the GT: precision 0 then 1/2
    r = detection_ap({"v": [(0, 10, "a")]}, [d("v", "a", 1, 10, 0.9), d("v", "a", 0, 10, 0.8)], ANET)
    assert np.allclose(r["ap"][:, 0], [1] * 9 + [0.5]) and math.isclose(r["average_mAP"], 0.95)


def test_a_class_without_detections_scores_zero_and_still_counts():
    gt = {"v1": [(0, 10, "a")], "v2": [(5, 9, "b")]}
    r = detection_ap(gt, [d("v1", "a", 0, 10, 0.7)], ANET)
    assert r["classes"] == ["a", "b"] and np.allclose(r["ap"], [[1, 0]] * 10) and math.isclose(r["average_mAP"], 0.5)


def test_detections_of_a_class_absent_from_the_ground_truth_are_not_scored():
    gt = {"v1": [(0, 10, "a")]}
    alone = detection_ap(gt, [d("v1", "a", 0, 10, 0.5)], ANET)
    more = detection_ap(gt, [d("v1", "zebra", 0, 10, 0.9), d("v1", "a", 0, 10, 0.5)], ANET)
    assert more["classes"] == ["a"] and more["ignored_detections"] == 1
    assert np.array_equal(alone["ap"], more["ap"])


def test_ties_are_visited_in_reverse_file_order_and_other_videos_are_false_positives():
    gt = {"v": [(0, 10, "a")]}
    hit, miss = d("v", "a", 0, 10, 0.5), d("v", "a", 50, 60, 0.5)
    assert math.isclose(detection_ap(gt, [hit, miss], [0.5])["average_mAP"], 0.5)  # miss visited first
    assert math.isclose(detection_ap(gt, [miss, hit], [0.5])["average_mAP"], 1.0)
    # a detection in a video without GT of its class is a false positive, ranked here above the hit
    assert math.isclose(detection_ap(gt, [d("w", "a", 0, 10, 0.9), hit], [0.5])["average_mAP"], 0.5)


def test_thumos_and_anet_conventions_by_hand():
    # tIoU 0.45: a true positive at 0.3 and 0.4 only
    r = detection_report({"v": [(0, 10, "a")]}, [d("v", "a", 0, 4.5, 0.9)])
    assert r["anet"]["average_mAP"] == 0 and math.isclose(r["thumos"]["average_mAP"], 0.4)
    assert r["thumos"]["mAP"] == {"0.30": 1.0, "0.40": 1.0, "0.50": 0.0, "0.60": 0.0, "0.70": 0.0}
    assert "0.50:0.05:0.95" in r["anet"]["convention"] and "0.3:0.1:0.7" in r["thumos"]["convention"]


def brute_force_ap(gt, detections, thresholds):
    """Independent of the implementation: matching written as 'the unmatched GT of highest tIoU >= t' (the
    later one on ties) and AP as Σ Δrecall · (the best precision at any recall >= r)."""
    classes = list(dict.fromkeys(lab for segs in gt.values() for *_, lab in segs))
    out = np.zeros((len(thresholds), len(classes)))
    for c, name in enumerate(classes):
        mine = [(k, x) for k, x in enumerate(detections) if x.label == name]
        order = sorted(mine, key=lambda kx: (kx[1].score, kx[0]), reverse=True)  # ties: later in the file first
        n_gt = sum(1 for segs in gt.values() for *_, lab in segs if lab == name)
        for t, th in enumerate(thresholds):
            used, hits = set(), []
            for _, x in order:
                best = None
                for j, (s, e, lab) in enumerate(gt.get(x.video, [])):
                    if lab != name or (x.video, j) in used:
                        continue
                    inter = max(0.0, min(e, x.end) - max(s, x.start))
                    iou = inter / ((e - s) + (x.end - x.start) - inter)
                    if iou >= th and (best is None or iou >= best[0]):
                        best = (iou, j)
                if best is not None:
                    used.add((x.video, best[1]))
                hits.append(best is not None)
            points = [(sum(hits[:i + 1]) / n_gt, sum(hits[:i + 1]) / (i + 1)) for i in range(len(hits))]
            ap, prev = 0.0, 0.0
            for r in sorted({r for r, _ in points}):
                ap += (r - prev) * max(p for rr, p in points if rr >= r)
                prev = r
            out[t, c] = ap
    return out


def test_map_equals_a_brute_force_reference_on_random_cases():
    rng = np.random.default_rng(0)
    checked = 0
    for case in range(150):
        labels = ["a", "b", "c"][:rng.integers(1, 4)]
        gt = {}
        for v in range(rng.integers(1, 4)):
            segs = [(s, s + float(rng.integers(1, 15)), str(rng.choice(labels)))
                    for s in rng.integers(0, 40, size=rng.integers(0, 6)).astype(float)]
            if segs:
                gt[f"v{v}"] = segs
        if not gt:
            continue
        dets = [d(f"v{rng.integers(0, 4)}", str(rng.choice(labels + ["other"])), s, s + float(rng.integers(1, 15)),
                  rng.integers(0, 6) / 5 if rng.random() < 0.5 else rng.random())  # many tied scores
                for s in rng.integers(0, 40, size=rng.integers(0, 30)).astype(float)]
        th = ANET if case % 2 else THUMOS
        np.testing.assert_allclose(detection_ap(gt, dets, th)["ap"], brute_force_ap(gt, dets, th), atol=1e-12)
        checked += 1
    assert checked > 100


# -- NMS ----------------------------------------------------------------------------------------------------
def test_hard_nms_by_hand():
    segs = np.array([[0, 10], [1, 11], [20, 30], [0.5, 9.5]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # [0.5, 9.5] first; [0, 10] overlaps it 0.9 and [1, 11] 0.85: both suppressed at 0.5
    assert nms(segs, scores, 0.5).tolist() == [3, 2]
    assert nms(segs, scores, 0.95).tolist() == [3, 0, 1, 2]  # nothing overlaps that much
    assert nms(segs, scores, 0.95, min_score=0.75).tolist() == [3, 0, 1]  # below min_score: dropped first
    assert nms(segs, scores, 0.95, max_num=2).tolist() == [3, 0]


def test_gaussian_soft_nms_by_hand():
    segs = np.array([[0, 10], [0, 5], [20, 30]])
    scores = np.array([0.9, 0.8, 0.3])
    kept, decayed = soft_nms(segs, scores, sigma=0.5, min_score=0.001)
    # [0, 5] overlaps [0, 10] by 5 / 10 = 0.5 → × exp(−0.5² / 0.5); [20, 30] overlaps nothing
    assert kept.tolist() == [0, 1, 2]
    np.testing.assert_allclose(decayed, [0.9, 0.8 * math.exp(-0.5), 0.3], rtol=1e-6)
    # the decayed score now ranks below min_score 0.5: discarded; without decay it would have stayed
    assert soft_nms(segs, scores, sigma=0.5, min_score=0.5)[0].tolist() == [0]
    assert soft_nms(segs, scores, sigma=0.5, min_score=0.001, max_num=2)[0].tolist() == [0, 1]
    # decays reorder: a once-second segment under a big overlap falls behind a lone lower one
    kept, _ = soft_nms(np.array([[0, 10], [0.5, 10], [40, 41]]), np.array([0.9, 0.85, 0.6]), sigma=0.5)
    assert kept.tolist() == [0, 2, 1]


def reference_soft_nms(segs, scores, sigma, min_score):
    """ActionFormer's softnms_1d_cpu loop, line by line (method 2), in float32."""
    f = np.float32
    x1, x2, sc = [list(map(f, a)) for a in (segs[:, 0], segs[:, 1], scores)]
    area = [a - b + f(1e-6) for a, b in zip(x2, x1)]
    ind = list(range(len(sc)))
    arrays = [x1, x2, sc, area, ind]
    n, i, out = len(sc), 0, []
    while i < n:
        m = i
        for p in range(i + 1, n):
            if sc[m] < sc[p]:
                m = p
        for a in arrays:
            a[i], a[m] = a[m], a[i]
        out.append(sc[i])
        p = i + 1
        while p < n:
            inter = max(f(0), min(x2[i], x2[p]) - max(x1[i], x1[p]))
            ovr = f(inter / (area[i] + area[p] - inter))
            sc[p] = f(sc[p] * f(np.exp(-(ovr * ovr) / f(sigma))))
            if sc[p] < f(min_score):
                for a in arrays:
                    a[p] = a[n - 1]
                n -= 1
                p -= 1
            p += 1
        i += 1
    return np.array(ind[:n]), np.array(out[:n], np.float32)


def test_soft_nms_equals_the_reference_loop_on_random_cases():
    rng = np.random.default_rng(1)
    for _ in range(60):
        n = int(rng.integers(1, 40))
        start = rng.integers(0, 30, n).astype(np.float32)
        segs = np.stack([start, start + rng.integers(1, 12, n)], 1).astype(np.float32)
        scores = (rng.integers(1, 8, n) / 8).astype(np.float32)  # ties and heavy decays: discards happen
        kept, decayed = soft_nms(segs, scores, sigma=0.5, min_score=0.2)
        ref_kept, ref_scores = reference_soft_nms(segs, scores, 0.5, 0.2)
        assert kept.tolist() == ref_kept.tolist()
        np.testing.assert_allclose(decayed, ref_scores, rtol=1e-6)


def test_batched_nms_is_per_class_and_capped():
    segs = np.array([[0, 10], [0, 10], [0, 10], [50, 60]])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([0, 1, 0, 1])
    s, sc, lab = batched_nms(segs, scores, labels, method="hard", iou_threshold=0.5, max_segments=10)
    # the class-1 copy of [0, 10] survives class 0's; class 0's own copy does not
    assert lab.tolist() == [0, 1, 1] and np.allclose(sc, [0.9, 0.8, 0.6])
    s, sc, lab = batched_nms(segs, scores, labels, method="hard", iou_threshold=0.5, multiclass=False,
                             max_segments=10)
    assert np.allclose(sc, [0.9, 0.6])
    s, sc, lab = batched_nms(segs, scores, labels, method="soft", sigma=0.5, min_score=0.001, max_segments=2)
    assert len(sc) == 2 and np.allclose(sc, [0.9, 0.8])  # re-sorted over classes, cut to max_segments
    _, sc, _ = batched_nms(segs, scores, labels, method="soft", sigma=0.5, max_segments=10)
    assert math.isclose(sc[-1], 0.7 * math.exp(-1 / 0.5), rel_tol=1e-5)  # the exact copy: overlap 1


@pytest.mark.parametrize("method", ["soft", "hard", "none"])
def test_nms_of_nothing_is_nothing(method):
    s, sc, lab = batched_nms(np.zeros((0, 2)), np.zeros(0), np.zeros(0, np.int64), method=method)
    assert s.shape == (0, 2) and len(sc) == len(lab) == 0


# -- ActivityNet JSON and `vt-score detection` ---------------------------------------------------------------
@pytest.fixture
def anet_files(tmp_path):
    from framework.metrics.detection import write_ground_truth, write_results

    gt = {"v1": [(0, 10, "a"), (20, 30, "b")], "v2": [(5, 9, "a")]}
    gt_path = write_ground_truth(tmp_path / "gt.json", gt, subset="validation")
    dets = [d("v1", "a", 0, 10, 0.9), d("v1", "b", 21, 30, 0.8), d("v2", "a", 0, 4, 0.7)]
    return gt, dets, gt_path, write_results(tmp_path / "results.json", dets)


def test_results_and_ground_truth_files_round_trip(anet_files):
    from framework.metrics.detection import read_ground_truth, read_results

    gt, dets, gt_path, results_path = anet_files
    assert read_results(results_path) == dets
    assert read_ground_truth(gt_path, "validation") == {v: [tuple(map(float, s[:2])) + (s[2],) for s in segs]
                                                        for v, segs in gt.items()}


def test_vt_score_detection_scores_a_results_file_like_the_library(anet_files, tmp_path, capsys):
    import json

    from framework.score import main

    gt, dets, gt_path, results_path = anet_files
    assert main(["detection", str(results_path), str(gt_path), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    expected = detection_report(gt, dets)
    assert f"anet: average mAP {expected['anet']['average_mAP']:.4f}" in out and "thumos: average mAP" in out
    assert json.loads((tmp_path / "r.json").read_text())["anet"]["mAP"] == expected["anet"]["mAP"]
    assert main(["detection", str(results_path), str(gt_path), "--thresholds", "thumos"]) == 0
    assert "anet:" not in capsys.readouterr().out


@pytest.mark.parametrize("results, message", [
    ({"v1": [{"label": "zebra", "segment": [0, 1], "score": 0.5}]}, "label(s) the ground truth of subset"),
    ({"v9": [{"label": "a", "segment": [0, 1], "score": 0.5}]}, "not in the ground truth's 'validation' subset"),
    ({"v1": [{"label": "a", "segment": [5, 1], "score": 0.5}]}, "malformed segment [5, 1]"),
    ({"v1": [{"label": "a", "segment": "0-1", "score": 0.5}]}, "malformed segment '0-1'"),
    ({"v1": [{"label": "a", "segment": [0, 1]}]}, "needs 'label', 'segment' and 'score'"),
    ({"v1": [{"label": "a", "segment": [0, 1], "score": "high"}]}, "is not a number"),
], ids=["unknown-label", "unknown-video", "end-before-start", "not-a-pair", "no-score", "bad-score"])
def test_vt_score_detection_refuses_bad_results_in_one_line(anet_files, tmp_path, capsys, results, message):
    import json

    from framework.score import main

    _, _, gt_path, _ = anet_files
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": results}))
    assert main(["detection", str(bad), str(gt_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vt-score: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_extra_videos_can_count_as_false_positives_as_the_official_evaluator_does(anet_files, tmp_path, capsys):
    import json

    from framework.score import main

    _, _, gt_path, _ = anet_files
    res = tmp_path / "extra.json"
    res.write_text(json.dumps({"results": {"v1": [{"label": "a", "segment": [0, 10], "score": 0.5}],
                                           "v9": [{"label": "a", "segment": [0, 10], "score": 0.9}]}}))
    assert main(["detection", str(res), str(gt_path), "--extra-videos", "fp", "--json", str(tmp_path / "r.json")]) == 0
    # class a: a false positive (v9) ranked above the hit (recall 1/2): AP 1/4; class b: no detection, 0
    assert math.isclose(json.loads((tmp_path / "r.json").read_text())["anet"]["average_mAP"], 0.125)
    for args, message in (([str(tmp_path / "none.json"), str(gt_path)], "no such file"),
                          ([str(res), str(gt_path), "--subset", "testing"], "no video in subset 'testing'")):
        assert main(["detection", *args]) == 2 and message in capsys.readouterr().err
