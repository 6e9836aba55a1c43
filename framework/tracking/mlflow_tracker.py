"""MlflowTracker: tracking calls go to the run folder's outbox at once and reach MLflow from a background courier,
so a slow, absent or vanishing tracking server never stalls training and loses nothing."""
from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from pathlib import Path

from . import Tracker, credentials, mlflow_executable
from .delivery import Delivery, configure_http
from .outbox import Outbox, RunRecord, open_record

log = logging.getLogger(__name__)


class Courier(threading.Thread):
    """Delivers the outbox whenever it grows; while the server is unreachable it retries with backoff (1, 2, 4,
    then every `max_backoff_s` seconds) and the entries wait on disk."""

    def __init__(self, delivery: Delivery, max_backoff_s: float = 5.0):
        super().__init__(name="mlflow-courier", daemon=True)  # daemon: a stuck request must not hold up exit
        self.delivery, self.max_backoff_s = delivery, max_backoff_s
        self.wake, self.stopping = threading.Event(), threading.Event()
        self.failing = False

    def run(self) -> None:
        backoff = 0.0
        while not self.stopping.is_set():
            if backoff:
                self.stopping.wait(backoff)
            else:
                self.wake.wait(timeout=5.0)
                self.wake.clear()
            if self.stopping.is_set():
                return
            backoff = 0.0 if self.attempt() else min(max(1.0, 2 * backoff), self.max_backoff_s)

    def attempt(self) -> bool:
        try:
            delivered = self.delivery.drain()
        except Exception as e:  # an outage: the entries stay in the outbox for the next attempt
            if not self.failing:
                log.warning("MLflow unreachable (%s); training goes on, tracking waits in %s and is delivered "
                            "when the server answers", short(e), self.delivery.outbox.path)
            self.failing = True
            return False
        if self.failing:
            log.warning("MLflow reachable again; %d waiting entries delivered", delivered)
        self.failing = False
        return True

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        self.join(timeout)


def short(error: Exception) -> str:
    """One line for a log: MLflow wraps a refused connection in three layers of urllib3 text."""
    text = str(error)
    for symptom in ("Connection refused", "timed out", "Connection reset", "Name or service not known"):
        if symptom in text:
            return symptom.lower()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


class MlflowTracker(Tracker):
    """Rank 0's tracker. `run_id` is None until a server has been reached (then it is in mlflow_run.json)."""

    def __init__(self, run_dir: Path, cfg, run_name: str, tags: dict):
        configure_http()
        self.run_dir = Path(run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # credentials in the URI go to MLflow's environment variables; the record and every print get it without
        self.uri = credentials.adopt(cfg.tracking_uri) or f"sqlite:///{self.run_dir / 'mlflow.db'}"
        open_record(self.run_dir, self.uri, cfg.experiment, cfg.run_name or run_name)
        self.outbox = Outbox(self.run_dir)
        self.system = self._system_metrics(cfg.system_metrics_every_s)
        self.log_checkpoint, self.last_checkpoint = cfg.log_checkpoint, None
        self.delivery = Delivery(self.run_dir)
        self.courier = Courier(self.delivery)
        self._append("status", status="RUNNING")  # a resumed job reopens its run
        self.set_tags({"run_dir": self.run_dir, **tags})
        self.courier.start()
        self.closed = False
        atexit.register(self._deliver_at_exit)
        self._chain_excepthook()

    @staticmethod
    def _system_metrics(every_s: float | None):
        from .system import SystemMetrics

        return SystemMetrics(every_s) if every_s is not None else None

    @property
    def run_id(self) -> str | None:
        record = RunRecord.load(self.run_dir)
        return record.run_id if record else None

    @property
    def ui_command(self) -> str | None:
        if self.run_id is None:  # nothing on a server yet; close() said how to deliver it
            return None
        if self.uri.startswith("sqlite"):
            return f"{mlflow_executable()} ui --backend-store-uri {self.uri} --host 127.0.0.1 --port 5000"
        return f"open {self.uri}"

    def _append(self, op: str, **fields) -> None:
        self.outbox.append({"op": op, "ts": int(time.time() * 1000), **fields})
        self.courier.wake.set()

    def log_params(self, params: dict) -> None:
        self._append("params", values={k: str(v) for k, v in params.items()})

    def log_metrics(self, metrics: dict, step: int) -> None:
        system = self.system.sample() if self.system else {}
        self._append("metrics", step=step, values={k: float(v) for k, v in {**metrics, **system}.items()})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._append("artifact", path=str(Path(path).resolve()), artifact_path=artifact_path)

    def set_tags(self, tags: dict) -> None:
        self.last_checkpoint = tags.get("last_checkpoint", self.last_checkpoint)
        self._append("tags", values={k: str(v) for k, v in tags.items()})

    def close(self, status: str = "FINISHED") -> None:
        """Deliver what is left now if the server answers; if not, say how to deliver it later."""
        self.closed = True
        if self.log_checkpoint and self.last_checkpoint is not None:  # the final checkpoint, as the run's model
            self.log_artifact(self.last_checkpoint, artifact_path="checkpoint")
        self._append("status", status=status)
        self._final_delivery()

    def _chain_excepthook(self) -> None:
        """A job that dies of an exception marks its run FAILED (KILLED on Ctrl-C), as mlflow.start_run does,
        instead of leaving it RUNNING forever."""
        previous = sys.excepthook

        def hook(kind, value, traceback):
            if not self.closed:
                self.close("KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")
            previous(kind, value, traceback)

        sys.excepthook = hook

    def _deliver_at_exit(self) -> None:
        """A job that ends without close() (an exception, sys.exit on preemption) still sends what it logged:
        the courier is a daemon thread and would die with entries in flight. The run's status is left alone."""
        if not self.closed:
            self._final_delivery()

    def _final_delivery(self) -> None:
        self.courier.stop(timeout=15.0)
        try:
            self.delivery.drain()
        except Exception as e:
            log.warning("MLflow unreachable at the end of the job (%s): %d bytes of tracking wait in %s; deliver "
                        "them with `vt-mlflow-sync %s` (or by resuming the run)", short(e),
                        self.delivery.pending_bytes(), self.outbox.path, self.run_dir)
