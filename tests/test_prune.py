"""Retention by hand: which checkpoint folders trainer.keep_last deletes."""
import json

from framework.checkpoint import MARKER, prune, write_pointer


def folder(d, step, complete=True):
    p = d / f"step{step:08d}"
    p.mkdir(parents=True)
    (p / "weights.pt").write_bytes(b"x" * step)
    if complete:
        (p / MARKER).write_text(json.dumps({"step": step, "world_size": 1, "files": {"weights.pt": step}}))
    return p


def test_keep_last_spares_latest_and_best_and_clears_old_incomplete_folders(tmp_path):
    for step in (2, 4, 6, 8, 10):
        folder(tmp_path, step)
    folder(tmp_path, 5, complete=False)  # a kill cut it short: older than the newest complete one
    folder(tmp_path, 12, complete=False)  # perhaps being written right now: newer, kept
    write_pointer(tmp_path, "best", "step00000004")
    write_pointer(tmp_path, "latest", "step00000010")
    gone = prune(tmp_path, keep_last=2)
    assert sorted(p.name for p in gone) == ["step00000002", "step00000005", "step00000006"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == \
        ["step00000004", "step00000008", "step00000010", "step00000012"]
    assert prune(tmp_path / "none", keep_last=1) == []
