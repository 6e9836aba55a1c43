"""Phase files in the Cholec80 text format: a `Frame<TAB>Phase` header, then `frame<TAB>phase` rows, the phase
as a name (Cholec80 ground truth) or an id (0-based, as TMRNet's prediction files write them).

MATLAB's ReadPhaseLabel.m always drops the first line as a header; files without a header (TMRNet's ground
truth) then lose their first row there. Here a first line is skipped only if it is not a row, unless
`matlab_header_skip=True` asks for MATLAB's behaviour.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = "Frame\tPhase"


class PhaseFileError(ValueError):
    """One line that names the file and what is wrong with it."""


@dataclass(frozen=True)
class PhaseRows:
    frames: np.ndarray  # [R] frame index of each row
    ids: np.ndarray  # [R] 0-based phase ids


def _is_row(line: str) -> bool:
    return line.split("\t", 1)[0].strip().lstrip("-").isdigit()


def read_phase_rows(path: Path, phases: list[str], matlab_header_skip: bool = False) -> PhaseRows:
    """Rows of a phase file with phases mapped to ids by `phases` (names, or ids 0..P−1)."""
    path = Path(path)
    if not path.is_file():
        raise PhaseFileError(f"{path}: no such file")
    lines = [ln.rstrip("\r") for ln in path.read_text().splitlines() if ln.strip()]
    if lines and (matlab_header_skip or not _is_row(lines[0])):
        lines = lines[1:]
    if not lines:
        raise PhaseFileError(f"{path}: no rows (an empty file, or a header only)")
    index = {name: i for i, name in enumerate(phases)}
    frames, ids = [], []
    for lineno, line in enumerate(lines, start=1):
        parts = line.split()
        if len(parts) != 2 or not _is_row(parts[0]):
            raise PhaseFileError(f"{path}: row {lineno} is not 'frame<TAB>phase': {line!r}")
        frames.append(int(parts[0]))
        ids.append(_phase_id(parts[1], index, len(phases), path, lineno))
    return PhaseRows(np.asarray(frames, np.int64), np.asarray(ids, np.int64))


def _phase_id(value: str, index: dict, count: int, path: Path, lineno: int) -> int:
    if value in index:
        return index[value]
    if value.isdigit() and int(value) < count:
        return int(value)
    raise PhaseFileError(f"{path}: row {lineno}: unknown phase {value!r} (phases: {', '.join(index)} or ids "
                         f"0..{count - 1})")


def write_phase_rows(path: Path, frames: np.ndarray, ids: np.ndarray, phases: list[str] | None = None) -> None:
    """One file; phases written as names when `phases` is given, else as ids."""
    rows = [HEADER] + [f"{int(f)}\t{phases[int(i)] if phases else int(i)}" for f, i in zip(frames, ids)]
    Path(path).write_text("\n".join(rows) + "\n")


def paired_files(pred_dir: Path, gt_dir: Path, pattern: str = "*.txt") -> list[tuple[Path, Path]]:
    """Ground-truth files and the prediction file of the same name. Every ground-truth file needs one."""
    gts = sorted(Path(gt_dir).glob(pattern))
    if not gts:
        raise PhaseFileError(f"{gt_dir}: no ground-truth files matching {pattern}")
    missing = [g.name for g in gts if not (Path(pred_dir) / g.name).is_file()]
    if missing:
        raise PhaseFileError(f"{pred_dir}: no prediction file for {len(missing)} ground-truth file(s): "
                             f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return [(Path(pred_dir) / g.name, g) for g in gts]


def check_same_rows(pred: PhaseRows, gt: PhaseRows, pred_path: Path, gt_path: Path) -> None:
    """Main.m refuses files of different lengths or frame indices; so do we, naming both."""
    if len(pred.frames) != len(gt.frames):
        raise PhaseFileError(f"{pred_path}: {len(pred.frames)} rows, but {gt_path} has {len(gt.frames)}")
    if not np.array_equal(pred.frames, gt.frames):
        i = int(np.flatnonzero(pred.frames != gt.frames)[0])
        raise PhaseFileError(f"{pred_path}: row {i + 1} is frame {pred.frames[i]}, but {gt_path} has frame "
                             f"{gt.frames[i]} there")
