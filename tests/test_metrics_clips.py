"""Multi-view aggregation, top-k and mean class accuracy against hand-worked cases."""
import math

import numpy as np
import pytest

from framework.data.order import view_plan
from framework.metrics.clips import aggregate, clip_report, mean_class_accuracy, softmax, top_k


def test_view_aggregations_by_hand():
    # two views: one confident for class 0, one mildly for class 1
    views = np.array([[4.0, 0.0], [0.0, 1.0]])
    p = softmax(views)
    assert np.allclose(aggregate(views, "sum"), p.sum(0)) and np.allclose(aggregate(views, "mean"), p.mean(0))
    assert aggregate(views, "sum").argmax() == aggregate(views, "mean").argmax() == 0
    assert np.allclose(aggregate(views, "logits"), [2.0, 0.5]) and np.allclose(aggregate(views, "max"), p.max(0))
    # probability and logit averaging can disagree: one very confident view for class 0, two moderate ones for
    # class 1. Mean logits (10/3, 2) → class 0; probabilities (1.00, 0.00) + 2 × (0.05, 0.95) → class 1
    views = np.array([[10.0, 0.0], [0.0, 3.0], [0.0, 3.0]])
    assert aggregate(views, "logits").argmax() == 0 and aggregate(views, "sum").argmax() == 1
    with pytest.raises(ValueError, match="view aggregation 'vote'"):
        aggregate(views, "vote")


def test_top_k_by_hand():
    scores = np.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([2, 0, 0])
    assert top_k(scores, labels, 1) == 1 / 3  # only video 1
    assert top_k(scores, labels, 2) == 2 / 3  # video 0's label is second; video 2's is last
    assert top_k(scores, labels, 5) == 1.0  # k above the number of classes: every label is in


def test_mean_class_accuracy_counts_predicted_but_never_true_classes_as_zero():
    # class 0: 2 of 3 right; class 1: 1 of 1; class 2 predicted once, never true → 0; mean (2/3 + 1 + 0) / 3
    pred, labels = np.array([0, 0, 2, 1]), np.array([0, 0, 0, 1])
    assert math.isclose(mean_class_accuracy(pred, labels), (2 / 3 + 1) / 3)
    r = clip_report(np.eye(3)[[0, 0, 2, 1]], np.array([0, 0, 0, 1]), views=30, how="sum")
    assert r["top1"] == 0.75 and math.isclose(r["mean_class_accuracy"], (2 / 3 + 1) / 3) and r["views"] == 30


def test_temporal_views_start_where_pyslowfast_starts_them():
    # a 100-frame video, clips of 8 frames: span 8, delta 92; view i starts at ⌊92 · i / 10⌋
    (rank0,) = view_plan([100], world=1, batch_size=10, T=8, stride=1, views=10)
    assert [c.offset for c in rank0[0]] == [92 * i // 10 for i in range(10)]
    assert all(c.reset and c.length == 8 for c in rank0[0])
    # a video shorter than a clip: every view is the same padded clip
    (short,) = view_plan([5], world=1, batch_size=3, T=8, stride=1, views=3)
    assert [(c.offset, c.length) for c in short[0]] == [(0, 5)] * 3
