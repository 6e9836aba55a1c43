"""Reports as files: JSON that any reader parses (NaN is not JSON: undefined numbers are written as null)
and the flat `a/b/c` scalars MLflow takes."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .atomic import write_json as _write_json


def plain(obj):
    """Python scalars, lists and dicts only; NaN and ±Inf become None."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, (np.integer, bool, np.bool_)):
        return obj.item() if isinstance(obj, np.generic) else obj
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def write_json(path: Path, obj) -> Path:
    return _write_json(Path(path), plain(obj), indent=1)


def scalars(report: dict, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a nested report as {"a/b/c": value}; lists and strings are left out."""
    out = {}
    for k, v in report.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(scalars(v, key + "/"))
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
                and math.isfinite(float(v)):
            out[key] = float(v)
    return out
