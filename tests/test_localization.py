"""The localization head, its label assignment, losses and decoding: hand-worked cases."""
import math

import numpy as np
import pytest
import torch

from framework.models.actionformer import ActionFormerHead
from framework.tasks.pyramid import Geometry, assign, decode, diou_loss, sigmoid_focal_loss, window_segments


def test_label_assignment_by_hand():
    """16 one-frame snippets, 2 levels (strides 1, 2), ranges (0, 4) and (4, ∞). Segments in frames:
    A [2, 5) class 0, B [6, 16) class 1, C [2, 13) class 2, D [6, 16) class 0 (B's twin). A grid position is a
    snippet's centre, so frames f ↦ f − 0.5: A = [1.5, 4.5], B = D = [5.5, 15.5], C = [1.5, 12.5]."""
    geo = Geometry(levels=2, snippet_len=1, snippet_stride=1, ranges=((0, 4), (4, 8)))
    pts = geo.points(16)
    assert len(pts["grid"]) == 16 + 8 and geo.num_points(16) == 24
    segs = geo.to_grid(np.array([[2, 5], [6, 16], [2, 13], [6, 16]]), f0=0, r=1)
    assert np.allclose(segs, [[1.5, 4.5], [5.5, 15.5], [1.5, 12.5], [5.5, 15.5]])
    cls, reg = assign(pts, segs, np.array([0, 1, 2, 0]), classes=3, radius=1.5)
    positive = {int(i): (cls[i].tolist(), reg[i].tolist()) for i in np.flatnonzero(cls.sum(1) > 0)}
    level1 = 16  # index of level 1's first point (grid 0); its point j sits at grid 2j
    expected = {
        # level 0, A's centre region [1.5, 4.5] (radius 1.5 · stride 1, inside A), max distance 2.5 < 4
        2: ([1, 0, 0], [0.5, 2.5]), 3: ([1, 0, 0], [1.5, 1.5]), 4: ([1, 0, 0], [2.5, 0.5]),
        # level 1, C's centre region [4, 10]: grid 6 (distance 6.5, in (4, 8)); B, D do not reach 6 (region [7.5, 13.5])
        level1 + 3: ([0, 0, 1], [4.5 / 2, 6.5 / 2]),
        # grid 8: B, C and D qualify; the shortest (B, D: 10 < 11) win, both their classes, B's distances (listed first)
        level1 + 4: ([1, 1, 0], [2.5 / 2, 7.5 / 2]),
        level1 + 5: ([1, 1, 0], [4.5 / 2, 5.5 / 2]), level1 + 6: ([1, 1, 0], [6.5 / 2, 3.5 / 2]),
    }
    assert positive.keys() == expected.keys()
    for i, (c, r) in expected.items():
        assert positive[i][0] == c and np.allclose(positive[i][1], r), i
    # A's points at level 1 reach only 2.5: outside (4, 8); B's at level 0 reach 5.5: outside (0, 4)


def test_window_segments_cut_to_the_window_and_drop_mostly_outside_ones():
    # fps 2: [1 s, 4 s) = frames [2, 8); window frames [4, 20): 4 of its 6 frames inside → kept, cut to [4, 8)
    segs = [[1.0, 4.0, 1], [9.0, 9.5, 2], [0.0, 2.5, 3], [9.5, 12.0, 1]]
    out = window_segments(segs, fps=2.0, f0=4, end=20, truncate=0.5)
    # [0, 2.5 s) = frames [0, 5): 1/5 inside → dropped; [9.5, 12 s) = [19, 24): 1/5 inside → dropped
    assert out.tolist() == [[4, 8, 1], [18, 19, 2]]


def test_a_batch_of_padding_lanes_has_a_zero_loss_that_backpropagates():
    """A rank whose lanes are all padding (past the end of the data): loss 0, attached to the graph (the
    engine's backward refuses a loss without a gradient), zero gradients."""
    from tests.relay_check import localization_task

    task, _ = localization_task()
    outputs = torch.randn(2, 12, 1, len(task.classes) + 2, requires_grad=True)
    loss = task.loss(outputs, torch.zeros(2, 8, 3, dtype=torch.long))  # column 2 (valid) is 0 everywhere
    loss.backward()
    assert loss.item() == 0 and loss.requires_grad and torch.equal(outputs.grad, torch.zeros_like(outputs))


def test_losses_by_hand():
    # focal: a confident right answer costs almost nothing, a confident wrong one a lot; α weighs positives
    right = sigmoid_focal_loss(torch.tensor([4.0]), torch.tensor([1.0]))
    wrong = sigmoid_focal_loss(torch.tensor([-4.0]), torch.tensor([1.0]))
    p = 1 / (1 + math.exp(4))
    assert math.isclose(wrong.item(), 0.25 * (1 - p) ** 2 * -math.log(p), rel_tol=1e-5) and right < 1e-4 * wrong
    # DIoU: exact → 0; prediction (1, 1) for target (1, 3): IoU 2/4, centres 1 apart, enclosing 4 → 1 − ½ + (1/4)²
    assert diou_loss(torch.tensor([[1.0, 3.0]]), torch.tensor([[1.0, 3.0]])).item() == 0
    assert math.isclose(diou_loss(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 3.0]])).item(), 0.5 + 1 / 16)


def test_decoding_perfect_outputs_gives_the_segments_back_in_seconds():
    """Logits and distances set to a segment's at its assigned points: after decoding and Soft-NMS the best
    detection is the segment itself, converted back with the snippet geometry (len 4, stride 2 frames, 4 fps)."""
    from framework.metrics.nms import batched_nms

    geo = Geometry(levels=3, snippet_len=4, snippet_stride=2)
    frames, fps = 64, 4.0
    truth = np.array([[10.0, 30.0]])  # frames; 2.5 s – 7.5 s
    pts = geo.points(frames)
    cls, reg = assign(pts, geo.to_grid(truth, 0, 1), np.array([1]), classes=2)
    pos = cls.sum(1) > 0
    assert pos.any()
    outputs = np.full((len(pts["grid"]), 4), -10.0, np.float32)
    outputs[pos, 1] = 5.0
    outputs[:, 2:] = reg
    segs, scores, labels = decode(outputs, geo, frames, f0=0.0, r=1.0)
    segs, scores, labels = batched_nms(segs, scores, labels, "soft", max_segments=5)
    assert labels[0] == 1 and np.allclose(segs[0] / fps, [2.5, 7.5], atol=1e-4)
    # every positive point gives the same segment: Soft-NMS keeps them, each decayed by exp(−1² / σ) once more
    assert len(segs) == pos.sum() >= 2 and math.isclose(scores[1], scores[0] * math.exp(-2), rel_tol=1e-4)


@pytest.mark.parametrize("blocks", ["conv", "attention"])
def test_head_outputs_per_point_and_ignore_padding(blocks):
    """Outputs at valid points do not depend on what the padding holds or how much of it there is: a window
    padded in training scores its frames as the unpadded whole video is scored at inference."""
    torch.manual_seed(0)
    head = ActionFormerHead(8, 3 + 2, hidden=16, levels=3, blocks=blocks, heads=2, window=5, snippet=(2, 2)).eval()
    geo = Geometry(levels=3, snippet_len=2, snippet_stride=2)
    x = torch.randn(2, 20, 8)
    out, state = head(x, None, torch.ones(2, dtype=torch.bool))
    assert state is None and out.shape == (2, geo.num_points(20), 5)
    assert (out[..., 3:] >= 0).all()  # distances (ReLU'd)
    junk = torch.cat([x[:1], 100 * torch.randn(1, 12, 8)], 1)  # the same 20 steps, then 12 of padding
    valid = torch.arange(32)[None] < 20
    padded, _ = head(junk, None, torch.ones(1, dtype=torch.bool), valid=valid)
    keep_short = geo.point_valid(np.ones(20, bool))
    keep_long = geo.point_valid(valid[0].numpy())
    torch.testing.assert_close(padded[0, torch.from_numpy(keep_long)], out[0, torch.from_numpy(keep_short)],
                               rtol=1e-5, atol=1e-5)


def test_classification_bias_starts_at_the_prior():
    head = ActionFormerHead(8, 4 + 2, hidden=16, levels=2)
    assert torch.allclose(head.cls_head.out.conv.bias, torch.full((4,), -math.log(99)))  # sigmoid(b) = 0.01


def perfect_results(task, videos):
    """Whole-video results whose outputs put every segment exactly at its assigned points."""
    from framework.tasks.base import VideoResult

    geo, out = task.geometry, []
    for v in videos:
        n = v.num_frames
        pts = geo.points(n)
        segs = np.array([[s * v.fps, e * v.fps] for s, e, _ in v.segments])
        cls, reg = assign(pts, geo.to_grid(segs, 0, 1), np.array([k - 1 for *_, k in v.segments]), len(task.classes))
        outputs = np.full((len(pts["grid"]), len(task.classes) + 2), -10.0, np.float32)
        outputs[:, :-2][cls > 0] = 5.0
        outputs[:, -2:] = reg
        frames = np.arange(n)
        out.append(VideoResult(v, frames, frames / v.fps, np.zeros(n, np.int64), outputs))
    return out


def test_the_report_and_the_written_files_score_alike_with_vt_score(tmp_path, capsys):
    """Decoding perfect outputs finds every segment (mAP 1 at every threshold); the exported ActivityNet files,
    scored by vt-score, give the report's numbers; a detection table row per detection."""
    import json

    from framework.config import ModelConfig
    from framework.data.manifest import Manifest, VideoEntry
    from framework.score import main
    from framework.tasks import TaskSet
    from framework.tasks.base import TaskContext
    from framework.tasks.localization import LocalizationConfig, LocalizationTask

    videos = [VideoEntry("a", "val", "s", 0, 80, 4.0, "a.mp4", duration=20.0,
                         segments=[[2.0, 6.5, 1], [12.0, 15.0, 2]]),
              VideoEntry("b", "val", "s", 0, 64, 4.0, "b.mp4", duration=16.0, segments=[[4.0, 11.0, 2]])]
    model = ModelConfig(head="actionformer", levels=4, snippet_len=2, snippet_stride=2)
    task = LocalizationTask(LocalizationConfig(), TaskContext(tmp_path, Manifest(["background", "x", "y"], videos), [],
                                                              model))
    results = perfect_results(task, videos)
    report = task.evaluate(results)
    assert report["anet"]["average_mAP"] == 1.0 and report["thumos"]["average_mAP"] == 1.0
    files = task.write_files(results, report, tmp_path / "eval")
    assert [f.name for f in files] == ["localization_results.json", "localization_gt.json", "localization_segments.png"]
    assert main(["detection", str(files[0]), str(files[1]), "--subset", "validation", "--json",
                 str(tmp_path / "s.json")]) == 0
    scored = json.loads((tmp_path / "s.json").read_text())
    assert scored["anet"] == report["anet"] and scored["thumos"] == report["thumos"]
    table = TaskSet([task]).columns(results[0])
    assert len(table["video"]) == len(table["localization_score"]) == len(task.detections(results[0])) > 0
    best = max(task.detections(results[0]), key=lambda d: d.score)
    assert best.label in ("x", "y") and (pytest.approx((best.start, best.end)) in [(2.0, 6.5), (12.0, 15.0)])
