"""JSON-lines files that a kill cannot wedge: the outbox and metrics.jsonl.

A kill (or a full disk) in the middle of an append leaves a line without its end. Each append therefore first
makes sure the file ends with a newline, so the torn piece stays a line of its own that readers can set aside,
instead of gluing itself to the next entry.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_atomic


def append_line(path: Path, line: str) -> None:
    """`line` (ending in a newline) at the end of the file, after a newline if the file lacks its last one."""
    data = line.encode()
    with open(path, "a+b") as f:
        if f.tell() > 0:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                data = b"\n" + data
        f.write(data)  # one write of the whole line: a reader never sees half an entry as complete


def append(path: Path, obj: dict) -> None:
    append_line(path, json.dumps(obj) + "\n")


def parse(raw: bytes) -> dict | None:
    """One complete line as an object, or None if it does not parse (a torn write)."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def keep_steps_up_to(path: Path, step: int) -> None:
    """Drop the rows logged after `step` (a resumed run logs them again) and any torn line."""
    path = Path(path)
    if not path.is_file():
        return
    with open(path, "rb") as f:
        rows = [row for raw in f if (row := parse(raw)) is not None and row.get("step", 0) <= step]
    text = "".join(json.dumps(row) + "\n" for row in rows)
    write_atomic(path, lambda f: f.write(text.encode()))
