"""`vt-score phase PRED_DIR GT_DIR`: score phase prediction files in the Cholec80 text format against
ground-truth files of the same names, with every convention the field uses (framework/metrics/phase.py).
`vt-score detection RESULTS GT_JSON`: score an ActivityNet results JSON (any method's, or our
eval/localization_results.json) against an ActivityNet ground-truth JSON with ActivityNet's evaluator
(framework/metrics/detection.py), at 0.50:0.05:0.95 and THUMOS's 0.3:0.1:0.7.

    vt-score phase results/preds data/cholec80/phase_annotations --video-fps 25
    vt-score phase preds gt --phases m2cai16 --fps 1 --json scores.json
    vt-score detection results.json activity_net.v1-3.min.json --subset validation --thresholds anet

Rows may come at any rate (every frame, every 25th, ...): the relaxation window is 10 s of *rows*, so the
rows' rate matters. `--fps` gives it directly; otherwise it is `--video-fps` (default 25, Cholec80's) over the
frame step between rows. Other methods' outputs are scored exactly like ours.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .entry import entry_point

PHASE_SETS = {"cholec80": "CHOLEC80_PHASES", "m2cai16": "M2CAI16_PHASES"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vt-score", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("phase", help="Cholec80-format phase files")
    s.add_argument("pred_dir", type=Path)
    s.add_argument("gt_dir", type=Path)
    s.add_argument("--phases", default="cholec80",
                   help="cholec80 (7), m2cai16 (8), or the phase names in workflow order, comma-separated")
    s.add_argument("--fps", type=float, default=None, help="label rows per second (default: from --video-fps)")
    s.add_argument("--video-fps", type=float, default=25.0, help="frame rate the Frame column counts in")
    s.add_argument("--offsets", default="auto", help="relaxation rules: auto | cholec80 | m2cai16 | general")
    s.add_argument("--pattern", default="*.txt", help="ground-truth file names (glob)")
    s.add_argument("--matlab-header-skip", action="store_true",
                   help="drop every file's first line as ReadPhaseLabel.m does, header or not")
    s.add_argument("--json", type=Path, default=None, help="also write the whole report here")
    s = sub.add_parser("detection", help="ActivityNet results JSON against a ground-truth JSON (mAP)")
    s.add_argument("results", type=Path, help="{'results': {video: [{'label', 'segment', 'score'}]}}")
    s.add_argument("gt", type=Path, help="{'database': {video: {'subset', 'annotations': [...]}}}")
    s.add_argument("--subset", default="validation", help="the ground truth's subset to score on")
    s.add_argument("--thresholds", choices=("anet", "thumos", "both"), default="both",
                   help="anet: tIoU 0.50:0.05:0.95; thumos: 0.3:0.1:0.7 (both: default)")
    s.add_argument("--extra-videos", choices=("error", "fp"), default="error",
                   help="results for videos the subset lacks: refuse (default), or count them as false "
                        "positives as the official evaluator does")
    s.add_argument("--json", type=Path, default=None, help="also write the whole report here")
    return p


def phase_names(spec: str) -> list[str]:
    from .metrics import cholec80

    if spec in PHASE_SETS:
        return list(getattr(cholec80, PHASE_SETS[spec]))
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if len(names) < 2:
        raise ValueError(f"--phases {spec!r}: cholec80, m2cai16, or at least two comma-separated names")
    return names


def rows_per_second(frames_by_video: list[np.ndarray], video_fps: float) -> float:
    steps = np.concatenate([np.diff(f) for f in frames_by_video if len(f) > 1] or [np.array([1])])
    return video_fps / float(np.median(steps))


def score_phase(a: argparse.Namespace) -> dict:
    from .metrics.phase import phase_report
    from .metrics.phase_files import check_same_rows, paired_files, read_phase_rows

    phases = phase_names(a.phases)
    videos, frames = {}, []
    for pred_path, gt_path in paired_files(a.pred_dir, a.gt_dir, a.pattern):
        gt = read_phase_rows(gt_path, phases, a.matlab_header_skip)
        pred = read_phase_rows(pred_path, phases, a.matlab_header_skip)
        check_same_rows(pred, gt, pred_path, gt_path)
        videos[gt_path.stem] = (gt.ids, pred.ids)
        frames.append(gt.frames)
    rate = a.fps or rows_per_second(frames, a.video_fps)
    return phase_report(videos, phases, rate, a.offsets)


def score_detection(a: argparse.Namespace) -> dict:
    from .metrics.detection import check_against, detection_report, read_ground_truth, read_results

    gt = read_ground_truth(a.gt, a.subset)
    detections = check_against(read_results(a.results), gt, a.subset, a.extra_videos)
    conventions = ("anet", "thumos") if a.thresholds == "both" else (a.thresholds,)
    return detection_report(gt, detections, conventions)


def detection_lines(report: dict) -> list[str]:
    lines = [f"{report['detections']} detections, {report['ground_truth']} ground-truth segments"]
    for name in ("anet", "thumos"):
        if name in report:
            r = report[name]
            at = ", ".join(f"{t} {m:.4f}" for t, m in r["mAP"].items())
            lines.append(f"{name}: average mAP {r['average_mAP']:.4f} (mAP at tIoU {at}; {len(r['AP_per_class'])} "
                         f"classes)")
    return lines


@entry_point
def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    from .metrics.detection import DetectionFileError
    from .metrics.phase import summary_lines
    from .metrics.phase_files import PhaseFileError

    try:
        report = score_phase(a) if a.what == "phase" else score_detection(a)
    except (PhaseFileError, DetectionFileError, ValueError) as e:
        print(f"vt-score: error: {e}", file=sys.stderr)
        return 2
    for line in summary_lines(report) if a.what == "phase" else detection_lines(report):
        print(line)
    if a.json:
        from .reports import write_json

        write_json(a.json, report)
        print(f"report: {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
