"""What a preparation run skipped and why: `prep_report.json` beside the manifest, and a table on the console."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from framework.atomic import write_json

REPORT_NAME = "prep_report.json"
EXIT_OK = 0
EXIT_FAILED = 2  # bad command line or nothing usable
EXIT_PARTIAL = 3  # shards written, but some inputs were skipped (listed in the report)


@dataclass(frozen=True)
class Problem:
    file: str  # relative to the data root
    reason: str
    stage: str  # discover | decode | annotations


def write_report(root: Path, problems: list[Problem], stats: dict) -> Path:
    path = Path(root) / REPORT_NAME
    body = {"status": "partial" if problems else "ok", **stats,
            "skipped": [asdict(p) for p in sorted(problems, key=lambda p: (p.file, p.stage))]}
    return write_json(path, body, indent=1)


def format_table(problems: list[Problem]) -> str:
    if not problems:
        return "no input was skipped"
    rows = sorted(problems, key=lambda p: (p.file, p.stage))
    width = min(max(len(p.file) for p in rows), 60)
    lines = [f"{len(rows)} input(s) skipped:", f"{'file':<{width}}  {'stage':<11}  reason"]
    lines += [f"{p.file:<{width}}  {p.stage:<11}  {p.reason}" for p in rows]
    return "\n".join(lines)
