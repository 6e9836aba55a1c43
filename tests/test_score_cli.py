"""`vt-score phase`: other methods' Cholec80-format files scored like ours; bad input gets one line."""
import json
import subprocess
import sys

import pytest

from framework.metrics.cholec80 import CHOLEC80_PHASES
from tests.conftest import REPO

P = CHOLEC80_PHASES


def write(path, rows, header=True):
    lines = (["Frame\tPhase"] if header else []) + [f"{f}\t{p}" for f, p in rows]
    path.write_text("\n".join(lines) + "\n")


def score(*args):
    return subprocess.run([sys.executable, "-m", "framework.score", "phase", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def folders(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    # one row per second (frames 0, 25, 50, ... of a 25 fps video): the window is 10 rows.
    # the prediction switches to phase 1 three rows late: a late transition the head rule forgives
    write(gt / "video41-phase.txt", [(25 * i, P[0] if i < 20 else P[1]) for i in range(40)])
    write(pred / "video41-phase.txt", [(25 * i, 0 if i < 23 else 1) for i in range(40)])  # ids, as TMRNet writes
    return pred, gt


def test_names_and_ids_score_the_same_and_relaxation_forgives_the_late_switch(folders, tmp_path):
    pred, gt = folders
    proc = score(pred, gt, "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["protocol_official"]["accuracy"]["mean"] == 100.0  # 3 late rows forgiven (window 10 rows)
    assert r["protocol_none"]["accuracy"]["mean"] == 100 * 37 / 40
    assert "window 10 rows" in r["protocol_official"]["convention"]
    assert r["protocol_official"]["jaccard"]["mean"] is None  # 5 phases absent from every video: NaN → null
    assert "official protocol" in proc.stdout


def test_the_row_rate_sets_the_window(folders, tmp_path):
    pred, gt = folders
    # at 0.2 rows/s the 10 s window is 2 rows: two of the three late rows are forgiven, one is not
    proc = score(pred, gt, "--fps", "0.2", "--json", tmp_path / "r.json")
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["protocol_official"]["accuracy"]["mean"] == 100 * 39 / 40, proc.stderr


@pytest.mark.parametrize("break_it, message", [
    (lambda pred, gt: (pred / "video41-phase.txt").unlink(),
     "no prediction file for 1 ground-truth file(s): video41-phase.txt"),
    (lambda pred, gt: write(pred / "video41-phase.txt", [(25 * i, 0) for i in range(39)]),
     "video41-phase.txt: 39 rows, but"),
    (lambda pred, gt: write(pred / "video41-phase.txt", [(24 * i, 0) for i in range(40)]),
     "row 2 is frame 24, but"),
    (lambda pred, gt: write(pred / "video41-phase.txt", [(25 * i, "Suturing") for i in range(40)]),
     "row 1: unknown phase 'Suturing'"),
    (lambda pred, gt: (pred / "video41-phase.txt").write_text(""), "no rows (an empty file, or a header only)"),
])
def test_bad_input_is_one_line_naming_the_file(folders, break_it, message):
    pred, gt = folders
    break_it(pred, gt)
    proc = score(pred, gt)
    assert proc.returncode == 2
    assert proc.stderr.startswith("vt-score: error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_matlab_header_skip_drops_the_first_row_of_headerless_files(folders, tmp_path):
    pred, gt = folders
    write(gt / "video41-phase.txt", [(25 * i, P[0] if i < 20 else P[1]) for i in range(40)], header=False)
    plain = score(pred, gt, "--json", tmp_path / "a.json")
    assert plain.returncode == 0, plain.stderr  # a headerless file keeps its first row here
    skipped = score(pred, gt, "--matlab-header-skip", "--json", tmp_path / "b.json")
    assert skipped.returncode == 2 and "has 39" in skipped.stderr  # as ReadPhaseLabel.m would read it
