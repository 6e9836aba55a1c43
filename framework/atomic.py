"""Files that appear whole or not at all: written beside their final name, then renamed over it (a rename is
atomic on POSIX), so a killed writer leaves the old file or the new one, never half of one."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())  # the data is on disk before the name points at it
    tmp.replace(path)
    return path


def write_json(path: Path, obj, indent: int | None = None) -> Path:
    text = json.dumps(obj, indent=indent) + "\n"
    return write_atomic(path, lambda f: f.write(text.encode()))
