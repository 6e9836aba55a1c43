"""Each annotation format, end to end through `vt-prep prepare`: what lands in the shards and the manifest."""
import json

import numpy as np
import pytest
from prep_media import frame_index, read_shard, write_phases, write_video

from data_prep.cli import main
from framework.data.manifest import Manifest


def prepare(root, *args):
    code = main(["prepare", "--root", str(root), "--quiet", "--size", "32", *args])
    return code, Manifest.load(root)


def samples(root, manifest, video_id):
    """The shard samples of one video, as the manifest places them."""
    video = next(v for v in manifest.videos if v.id == video_id)
    shard = read_shard(root / video.shard)
    rows = slice(video.start, video.start + video.num_frames)
    return video, {k: v[rows] for k, v in shard.items()}


def test_phases_at_25fps_sampled_at_1fps_with_tools(tmp_path):
    """Cholec80 layout: phase rows for every frame at 25 fps, tool rows every 25th frame; shards at 1 fps."""
    from data_prep.annotations import write_tool_file

    phases = ["Preparation"] * 60 + ["CalotTriangleDissection"] * 40 + ["ClippingCutting"] * 25
    write_video(tmp_path / "videos" / "video01.mp4", len(phases), fps=25)
    write_phases(tmp_path / "phase_annotations" / "video01-phase.txt", phases)
    tools = [(1, 0), (1, 1), (0, 1), (0, 0), (1, 0)]  # rows at frames 0, 25, 50, 75, 100
    (tmp_path / "tool_annotations").mkdir()
    write_tool_file(tmp_path / "tool_annotations" / "video01-tool.txt", ["Grasper", "Hook"], tools)
    code, manifest = prepare(tmp_path, "--fps", "1", "--phases", "phase_annotations/{id}-phase.txt",
                             "--tools", "tool_annotations/{id}-tool.txt")
    assert code == 0
    video, got = samples(tmp_path, manifest, "video01")
    assert manifest.labels == ["Preparation", "CalotTriangleDissection", "ClippingCutting"]
    assert [manifest.labels[i] for i in got["label"]] == [phases[i] for i in (0, 25, 50, 75, 100)]
    np.testing.assert_allclose(got["time"], [0, 1, 2, 3, 4])
    assert [frame_index(img) for img in _images(got)] == [0, 25 % 28, 50 % 28, 75 % 28, 100 % 28]
    assert manifest.tools == ["Grasper", "Hook"]
    np.testing.assert_array_equal(manifest.tool_targets(video), np.asarray(tools, bool))
    assert video.sha256 and video.source_fps == 25 and (video.height, video.width) == (32, 32)


def _images(got):
    import cv2

    return [cv2.imdecode(payload, cv2.IMREAD_COLOR) for _, _, payload in got["image"]]


def test_clip_csv_full_and_trimmed_videos(tmp_path):
    """Kinetics: a row names a full video (`abc.mp4`, sampled in [start, end)) or a downloaded trimmed clip
    (`def_000002_000004.mp4`, sampled whole)."""
    write_video(tmp_path / "videos" / "abc.mp4", 80, fps=10)
    write_video(tmp_path / "videos" / "def_000002_000004.mp4", 20, fps=10)
    (tmp_path / "clips.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                        "jumping,abc,3,5,train\nswimming,def,2,4,validate\n")
    code, manifest = prepare(tmp_path, "--fps", "2", "--clips", "clips.csv")
    assert code == 0
    assert manifest.labels == ["jumping", "swimming"]
    video, got = samples(tmp_path, manifest, "abc_000003_000005")
    assert (video.split, video.window, video.clip_label) == ("train", [3.0, 5.0], 0)
    np.testing.assert_allclose(got["time"], [3.0, 3.5, 4.0, 4.5])
    assert list(got["label"]) == [0] * 4
    video, got = samples(tmp_path, manifest, "def_000002_000004")
    assert (video.split, video.window, video.clip_label, video.num_frames) == ("val", [], 1, 4)
    assert list(got["label"]) == [1] * 4


def test_clip_csv_without_labels_gives_unlabeled_clips(tmp_path):
    """Kinetics test lists have no label column."""
    write_video(tmp_path / "videos" / "abc.mp4", 40, fps=10)
    (tmp_path / "test.csv").write_text("youtube_id,time_start,time_end,split\nabc,1,3,test\n")
    code, manifest = prepare(tmp_path, "--fps", "1", "--clips", "test.csv")
    assert code == 0 and manifest.labels == []
    video, got = samples(tmp_path, manifest, "abc_000001_000003")
    assert video.clip_label == -1 and list(got["label"]) == [-1, -1]


def test_temporal_segments_json(tmp_path):
    """ActivityNet: segments in seconds; frames outside every segment are background."""
    write_video(tmp_path / "videos" / "v_xyz.mp4", 60, fps=10)
    write_video(tmp_path / "videos" / "hidden.mp4", 10, fps=10)
    database = {"database": {"xyz": {"subset": "validation", "duration": 6.0, "annotations": [
        {"segment": [1.0, 2.5], "label": "Long jump"}, {"segment": [4.0, 5.0], "label": "Discus"}]},
        "hidden": {"subset": "testing", "duration": 1.0, "annotations": []}}}  # hidden test labels
    (tmp_path / "segments.json").write_text(json.dumps(database))
    code, manifest = prepare(tmp_path, "--fps", "2", "--segments", "segments.json")
    assert code == 0
    assert manifest.labels == ["background", "Discus", "Long jump"]
    video, got = samples(tmp_path, manifest, "v_xyz")
    names = [manifest.labels[i] for i in got["label"]]
    want = ["background"] * 2 + ["Long jump"] * 3 + ["background"] * 3 + ["Discus"] * 2 + ["background"] * 2
    assert names == want
    assert video.split == "val" and video.segments == [[1.0, 2.5, 2], [4.0, 5.0, 1]]
    video, got = samples(tmp_path, manifest, "hidden")
    assert video.split == "test" and list(got["label"]) == [-1, -1], "unknown, not background"


def test_unlabeled_videos_for_inference(tmp_path):
    write_video(tmp_path / "videos" / "a.mp4", 10, fps=10)
    write_video(tmp_path / "videos" / "sub" / "b.mkv", 10, fps=10)  # any container, nested folders
    code, manifest = prepare(tmp_path, "--fps", "5")
    assert code == 0 and manifest.labels == []
    assert [v.id for v in manifest.videos] == ["a", "sub/b"]
    for v in manifest.videos:
        assert list(samples(tmp_path, manifest, v.id)[1]["label"]) == [-1] * 5


@pytest.mark.parametrize("ann_fps,ok", [(None, True), (5.0, False)])
def test_phase_rows_at_another_rate(tmp_path, ann_fps, ok):
    """Rows every 5th frame of a 25 fps video (Frame 0, 5, 10, ...): right with the video's rate, and a
    wrong --ann-fps makes the labels 5x longer than the video, which is refused."""
    phases = ["a"] * 10 + ["b"] * 10
    write_video(tmp_path / "videos" / "v.mp4", 100, fps=25)
    write_phases(tmp_path / "annotations" / "v.txt", phases, step=5)
    args = ["--ann-fps", str(ann_fps)] if ann_fps else []
    code = main(["prepare", "--root", str(tmp_path), "--quiet", "--fps", "5", "--phases", "annotations/{id}.txt",
                 *args])
    report = json.loads((tmp_path / "prep_report.json").read_text())
    if ok:
        assert code == 0
        _, got = samples(tmp_path, Manifest.load(tmp_path), "v")
        assert list(got["label"]) == [0] * 10 + [1] * 10
    else:
        assert code == 2 and "labels run to" in report["skipped"][0]["reason"]
