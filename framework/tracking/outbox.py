"""The run folder's durable record of everything sent to MLflow.

Every tracking call is first appended as one JSON line to <run_dir>/mlflow_outbox.jsonl; a courier delivers the
lines to MLflow in order and records how far it got in <run_dir>/mlflow_run.json. Training therefore never waits
for a tracking server, and nothing is lost when one is down or the job is killed: what was not delivered is still
in the file, for the next job of the run or for `vt-mlflow-sync RUN_DIR`.

Memory stays bounded (the courier reads the file a chunk at a time); the file grows by ~150 bytes per logged
step, like metrics.jsonl, and is kept as the run's log of what it sent.
"""
from __future__ import annotations

import fcntl
import json
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import write_json
from .jsonl import append_line, parse

OUTBOX = "mlflow_outbox.jsonl"
RECORD = "mlflow_run.json"
LOCK = "mlflow_outbox.lock"
REJECTED = "mlflow_outbox.rejected.jsonl"


class Outbox:
    """Append-only JSON lines. Appends come from the training thread, reads from the courier."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / OUTBOX
        self._lock = threading.Lock()

    def append(self, entry: dict) -> None:
        with self._lock:
            append_line(self.path, json.dumps(entry) + "\n")  # after a torn line of a killed job: on a new line

    def size(self) -> int:
        return self.path.stat().st_size if self.path.is_file() else 0

    def read(self, offset: int, limit: int) -> tuple[list[tuple[dict, int]], tuple[bytes, int] | None]:
        """Up to `limit` complete entries from byte `offset`, each with the offset just past it; and, if the
        chunk ends at a line that does not parse (torn by a kill or a full disk), that line and the offset
        past it, so that it is set aside in its place in the order."""
        entries = []
        if not self.path.is_file():
            return entries, None
        with open(self.path, "rb") as f:
            f.seek(offset)
            for raw in f:
                if not raw.endswith(b"\n") or len(entries) >= limit:  # a line still being written waits
                    break
                offset += len(raw)
                entry = parse(raw)
                if entry is None:
                    return entries, (raw, offset)
                entries.append((entry, offset))
        return entries, None


@dataclass
class RunRecord:
    """Which MLflow run this folder belongs to and how much of the outbox it has received."""
    tracking_uri: str
    experiment: str = "video-training"  # defaults: records written before the outbox held only uri and run id
    run_name: str = "default"
    run_id: str | None = None
    delivered: int = 0  # byte offset into the outbox

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord | None:
        path = Path(run_dir) / RECORD
        if not path.is_file():
            return None
        fields = json.loads(path.read_text())
        return cls(**{k: fields[k] for k in cls.__dataclass_fields__ if k in fields})

    def save(self, run_dir: Path) -> None:
        write_json(Path(run_dir) / RECORD, asdict(self))


def open_record(run_dir: Path, tracking_uri: str, experiment: str, run_name: str) -> RunRecord:
    """The record a job starts from: the previous job's if it tracked to the same server, else a new one.
    A new server gets the whole outbox (the run's full history) from offset 0, in a run of its own."""
    with delivery_lock(run_dir):
        old = RunRecord.load(run_dir)
        if old is not None and old.tracking_uri == tracking_uri:
            return old
        record = RunRecord(tracking_uri, experiment, run_name)
        record.save(run_dir)
        return record


@contextmanager
def delivery_lock(run_dir: Path):
    """One deliverer at a time per run folder (the training job's courier or vt-mlflow-sync), so the outbox is
    delivered once and in order. flock is released by the OS when a holder dies."""
    with open(Path(run_dir) / LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
