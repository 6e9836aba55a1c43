"""Write a benchmark's figures into docs/BENCHMARKS.md, in a section of its own, with the machine named."""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path


def memory_bytes(field: str = "VmRSS") -> int:
    """A memory figure of this process from /proc/self/status: VmRSS (resident now), VmHWM (its peak)."""
    line = next(ln for ln in open("/proc/self/status") if ln.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU only: {os.cpu_count()} cores ({cpu}), torch {torch.__version__}"


def write_section(doc: Path, name: str, body: str) -> None:
    """Replace (or append) the block between <!-- name --> and <!-- /name -->."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n\nEach section is written by the script it names.\n"
    block = f"<!-- {name} -->\n{body.strip()}\n<!-- /{name} -->"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)
