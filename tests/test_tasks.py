"""The task layer: targets from the manifest, losses by hand, multi-task weights, unlabeled frames, configs."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from framework.config import ConfigError, load_config
from framework.data.loader import SequenceBatch
from framework.data.manifest import Manifest, VideoEntry
from framework.tasks import TaskSet, build_tasks, parse_task_configs
from framework.tasks.phase import median_frequency_weights


def video(vid, n, fps=1.0, tools=()):
    return VideoEntry(id=vid, split="train", shard="s.beton", start=0, num_frames=n, fps=fps, source="v.mp4",
                      tools=[list(t) for t in tools])


def batch(video_index, frames, labels, valid):
    """A SequenceBatch of one lane per row: video index (-1 padding), frame indices, labels, valid."""
    frames = torch.tensor(frames)
    B, T = frames.shape
    return SequenceBatch(frames=torch.zeros(B, T, 2, 2, 3, dtype=torch.uint8), labels=torch.tensor(labels),
                         valid=torch.tensor(valid), starts=torch.ones(B, dtype=torch.bool),
                         ends=torch.zeros(B, dtype=torch.bool), video=torch.tensor(video_index), frame=frames,
                         lengths=torch.tensor(valid).sum(1))


def tasks_for(manifest, train, **cfg):
    return build_tasks(parse_task_configs(cfg), "/nonexistent", manifest, train)


# a tool annotation by hand: one frame per minute; tool 0 (bipolar) present at frames 2 and 7, tool 1 (hook)
# at frame 0 only. Runs [first, end, bitmask]: bit 0 = bipolar, bit 1 = hook.
MANIFEST = Manifest(labels=["a", "b", "c"], tools=["bipolar", "hook"],
                    videos=[video("v0", 9, fps=1 / 60, tools=[(0, 1, 2), (1, 2, 0), (2, 3, 1), (3, 7, 0), (7, 8, 1),
                                                              (8, 9, 0)]),
                            video("v1", 4, fps=1 / 60)])  # v1 has no tool annotation: unlabeled for tools


def test_anticipation_targets_from_a_hand_made_tool_annotation():
    ts = tasks_for(MANIFEST, [], anticipation={"horizon": 3.0})
    (task,) = ts.tasks
    # bipolar: backwards from the end, c = 3 at the end; 0 where present; +1 minute per frame, clipped at 3
    # hook: present at 0 only → 0 then 3 everywhere after
    b = batch([0, 1, -1], [[0, 1, 2, 3, 4, 5, 6, 7, 8], [0, 1, 2, 3, 3, 3, 3, 3, 3], [0] * 9],
              [[0] * 9] * 3, [[True] * 8 + [False], [True] * 4 + [False] * 5, [False] * 9])
    t = task.targets(b, MANIFEST.videos)
    assert t.shape == (3, 9, 2)
    assert t[0, :8, 0].tolist() == [2, 1, 0, 3, 3, 2, 1, 0] and math.isnan(t[0, 8, 0])  # frame 8 is padding
    assert t[0, :8, 1].tolist() == [0, 3, 3, 3, 3, 3, 3, 3]
    assert torch.isnan(t[1]).all() and torch.isnan(t[2]).all()  # no annotation; a padding lane
    assert ts.out_dim == 8  # 2 regressions + 2 × 3 class logits


def test_tool_presence_targets_and_the_bce_loss_by_hand():
    ts = tasks_for(MANIFEST, [], tools={})
    (task,) = ts.tasks
    b = batch([0], [[0, 2]], [[0, 0]], [[True, True]])
    t = task.targets(b, MANIFEST.videos)
    assert t.tolist() == [[[0, 1], [1, 0]]]  # frame 0: hook; frame 2: bipolar
    out = torch.tensor([[[0.0, 2.0], [1.0, -1.0]]])
    # per frame the mean BCE over the two tools; summed over frames
    want = (F.binary_cross_entropy_with_logits(out, t.float(), reduction="sum") / 2).item()
    assert math.isclose(ts.loss(out, {"tools": t}, torch.tensor(1.0)).item(), want, rel_tol=1e-6)


def test_phase_loss_weights_stages_and_unlabeled_frames():
    ts = tasks_for(MANIFEST, [], phase={"class_weights": [1.0, 2.0, 0.5]})
    b = batch([0], [[0, 1, 2]], [[0, 1, -1]], [[True, True, True]])
    target = ts.targets(b, MANIFEST.videos)["phase"]
    logits = torch.randn(1, 3, 2, 3)  # a two-stage head: [B, T, S, C]
    # stage s, frame f: w[y] · CE; the unlabeled frame counts for nothing; averaged over the 2 stages
    want = sum(w * F.cross_entropy(logits[0, f, s][None], torch.tensor([y])).item()
               for s in range(2) for f, (y, w) in enumerate([(0, 1.0), (1, 2.0)])) / 2
    got = ts.loss(logits, {"phase": target}, torch.tensor(4.0)).item()
    assert math.isclose(got, want / 4, rel_tol=1e-5)  # divided by the frames of the step's sequences


def test_median_frequency_weights_by_hand():
    # frequencies .5 .25 .25, class 3 absent: median .25 → weights .5 1 1, absent class 0
    assert median_frequency_weights(np.array([2, 1, 1, 0])).tolist() == [0.5, 1.0, 1.0, 0.0]


def test_multi_task_loss_is_the_weighted_sum_of_each_tasks_block():
    ts = tasks_for(MANIFEST, [], phase={"class_weights": "none", "weight": 1.0}, tools={"weight": 0.25})
    assert isinstance(ts, TaskSet) and ts.out_dim == 3 + 2
    assert ts.slices == {"phase": slice(0, 3), "tools": slice(3, 5)}
    b = batch([0], [[0, 2]], [[2, 0]], [[True, True]])
    targets = ts.targets(b, MANIFEST.videos)
    out = torch.randn(1, 2, 5)
    ce = F.cross_entropy(out[0, :, :3], torch.tensor([2, 0]), reduction="sum")
    bce = F.binary_cross_entropy_with_logits(out[0, :, 3:], targets["tools"][0].float(), reduction="sum") / 2
    got = ts.loss(out, targets, torch.tensor(2.0))
    assert math.isclose(got.item(), ((ce + 0.25 * bce) / 2).item(), rel_tol=1e-6)
    stats = ts.step_stats(got, out, targets, torch.tensor(2.0))
    assert ts.names == ["loss", "phase/loss", "tools/loss", "phase/correct", "phase/labelled", "tools/correct",
                        "tools/labelled"]
    metrics = ts.window_metrics(stats.tolist(), steps=1)
    assert math.isclose(metrics["loss"], got.item(), rel_tol=1e-6)
    assert metrics["phase/accuracy"] == ((out[0, :, :3].argmax(-1) == torch.tensor([2, 0])).float().mean()).item()


def test_an_all_padding_batch_costs_nothing():
    ts = tasks_for(MANIFEST, [], phase={"class_weights": "none"}, tools={}, anticipation={})
    b = batch([-1], [[0, 0]], [[0, 0]], [[False, False]])
    targets = ts.targets(b, MANIFEST.videos)
    assert ts.loss(torch.randn(1, 2, ts.out_dim), targets, torch.tensor(1.0)).item() == 0.0


def test_unknown_tasks_and_options_are_one_line_config_errors():
    with pytest.raises(ConfigError, match=r"task=phse: unknown task \(did you mean phase\?\)"):
        parse_task_configs({"phse": {}})
    with pytest.raises(ConfigError, match=r"task\.tools\.pos_wieght: not an option of task tools"):
        parse_task_configs({"tools": {"pos_wieght": 2}})
    with pytest.raises(ConfigError, match="task.anticipation.horizon must be > 0"):
        parse_task_configs({"anticipation": {"horizon": 0}})


def test_hydra_composes_several_tasks_with_weights():
    cfg, raw = load_config(["task=[phase,tools]", "task.tools.weight=0.5"])
    assert list(cfg.task) == ["phase", "tools"] and cfg.task["tools"].weight == 0.5
    cfg, _ = load_config([])
    assert list(cfg.task) == ["phase"]  # the default
    with pytest.raises(ConfigError, match="task"):
        load_config(["task=nope"])


def test_tasks_that_need_tools_refuse_data_without_them():
    from framework.tasks import TaskError

    bare = Manifest(labels=["a"], videos=[video("v", 3)])
    with pytest.raises(TaskError, match="the manifest lists no tools"):
        tasks_for(bare, [], tools={})
    with pytest.raises(TaskError, match=r"\['scalpel'\] are not tools of the data"):
        tasks_for(MANIFEST, [], anticipation={"instruments": ["scalpel"]})


def results(labels, preds, n_classes=3):
    from framework.tasks import VideoResult

    out = []
    for i, (lab, pred) in enumerate(zip(labels, preds)):
        logits = np.eye(n_classes, dtype=np.float32)[pred]
        n = len(lab)
        out.append(VideoResult(video(f"v{i}", n), np.arange(n), np.arange(n, dtype=float), np.asarray(lab), logits))
    return out


def test_unlabeled_frames_are_ignored_and_an_unlabeled_split_says_so():
    ts = tasks_for(MANIFEST, [], phase={"class_weights": "none"})
    # half labelled, perfect where labelled: every frame-pooled number is 1, not 0.5
    half = ts.evaluate(results([[0, 1, -1, -1]], [[0, 1, 2, 2]]))["phase"]
    assert half["frame_pooled"]["accuracy"] == 1.0 and half["frame_pooled"]["f1"] == 1.0 and half["frames"] == 2
    assert half["protocol_none"]["accuracy"]["mean"] == 100.0
    # nothing labelled: no score at all, and the reason
    none = ts.evaluate(results([[-1, -1, -1]], [[0, 1, 2]]))
    assert none == {"phase": {"unlabeled": "split has no labels for task phase: nothing scored"}}
    assert ts.headlines(none) == ["split has no labels for task phase: nothing scored"]
    # training on unlabeled frames: a zero loss with a gradient of zeros, no index error
    b = batch([0], [[0, 1]], [[-1, -1]], [[True, True]])
    out = torch.randn(1, 2, 3, requires_grad=True)
    loss = ts.loss(out, ts.targets(b, MANIFEST.videos), torch.tensor(2.0))
    loss.backward()
    assert loss.item() == 0.0 and out.grad.abs().sum() == 0
