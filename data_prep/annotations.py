"""Per-frame phase annotations in the Cholec80 style: a `Frame\tPhase` header, then `index\tphase` rows."""
from __future__ import annotations

from pathlib import Path

HEADER = "Frame\tPhase"


class AnnotationError(ValueError):
    pass


def write_phase_file(path: Path, phases: list[str]) -> None:
    rows = [HEADER] + [f"{i}\t{p}" for i, p in enumerate(phases)]
    Path(path).write_text("\n".join(rows) + "\n")


def read_phase_file(path: Path) -> list[str]:
    """Return the phase of every annotated frame, in order. Rows must be 0, 1, 2, ... without gaps."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
    if not lines or lines[0].split("\t")[:2] != HEADER.split("\t"):
        raise AnnotationError(f"{path}: first line must be {HEADER!r}")
    phases = []
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].isdigit():
            raise AnnotationError(f"{path}:{lineno}: expected 'index<TAB>phase', got {line!r}")
        if int(parts[0]) != len(phases):
            raise AnnotationError(f"{path}:{lineno}: frame {parts[0]} out of order (expected {len(phases)})")
        phases.append(parts[1])
    return phases
