"""Delivering a run folder's outbox to MLflow, in order: the run is found or created on the first delivery that
reaches a server (so a job that starts while the server is down still gets its run), then the entries follow.

Idempotent by construction, so an entry sent twice (a crash between "sent" and "offset recorded", or a server
that died mid-request) is harmless: metrics carry the timestamp of the original call, and MLflow stores a metric
once per (key, step, timestamp, value); params already on the run are skipped; tags, artifacts and status
overwrite themselves; the run is found by its `run_dir` tag before a new one is created.
"""
from __future__ import annotations

import logging
import os
from itertools import groupby
from pathlib import Path

from .jsonl import append
from .outbox import REJECTED, Outbox, RunRecord, delivery_lock

log = logging.getLogger(__name__)
CHUNK = 200  # entries per locked delivery round: bounds memory and lets two deliverers interleave
MAX_BATCH = 100  # MLflow's log_batch accepts at most 100 params / tags and 1000 metrics

# MLflow's client retries a failed request 7 times with exponential backoff (minutes) and waits up to 120 s for an
# answer. The courier retries on its own schedule and must notice an outage at once, so one attempt fails fast.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def configure_http() -> None:
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)  # a user's own setting wins


def is_rejection(error: Exception) -> bool:
    """A refusal that retrying cannot change (4xx, e.g. an invalid value), as opposed to an outage."""
    from mlflow.exceptions import MlflowException

    if not isinstance(error, MlflowException):
        return False
    code = error.get_http_status_code()
    return 400 <= code < 500 and code != 429


class Delivery:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.outbox = Outbox(self.run_dir)
        self._clients = {}

    def client(self, uri: str):
        from mlflow.tracking import MlflowClient

        if uri not in self._clients:
            self._clients[uri] = MlflowClient(tracking_uri=uri)
        return self._clients[uri]

    def pending_bytes(self) -> int:
        record = RunRecord.load(self.run_dir)
        return self.outbox.size() - (record.delivered if record else 0)

    def drain(self, progress=None) -> int:
        """Deliver everything pending; returns the number of entries delivered. An outage raises, with every
        entry delivered so far recorded as such. `progress(entries)` is called after each chunk."""
        total = 0
        while (n := self.deliver_chunk()) > 0:
            total += n
            if progress:
                progress(n)
        return total

    def deliver_chunk(self) -> int:
        with delivery_lock(self.run_dir):
            record = RunRecord.load(self.run_dir)  # re-read: another deliverer may have moved it on
            entries, torn = self.outbox.read(record.delivered, CHUNK)
            if not entries and torn is None:
                return 0
            client = self.client(record.tracking_uri)
            if entries and record.run_id is None:
                record.run_id = find_or_create_run(client, record, self.run_dir, entries[0][0].get("ts"))
                record.save(self.run_dir)
            for group in batches(entries):
                self.send(client, record.run_id, [entry for entry, _ in group])
                record.delivered = group[-1][1]
                record.save(self.run_dir)
            if torn is not None:  # a line that cannot be delivered must not hold up the ones after it
                self.set_aside({"line": torn[0].decode(errors="replace")}, "not a complete JSON line (a torn write)")
                log.warning("a torn line in %s (a job killed mid-write?) is kept in %s; delivery goes on",
                            self.outbox.path, self.run_dir / REJECTED)
                record.delivered = torn[1]
                record.save(self.run_dir)
            return len(entries) + (torn is not None)

    def send(self, client, run_id: str, entries: list[dict]) -> None:
        try:
            SENDERS[entries[0]["op"]](client, run_id, entries)
        except Exception as e:
            if not is_rejection(e):
                raise
            if len(entries) > 1:  # find the bad one: the rest of the batch goes through
                for entry in entries:
                    self.send(client, run_id, [entry])
                return
            # refused for good: set aside (not lost) so that one bad value cannot block the rest of the run
            self.set_aside({"entry": entries[0]}, str(e))
            log.warning("MLflow refused a tracking entry (%s); kept in %s", e, self.run_dir / REJECTED)

    def set_aside(self, what: dict, error: str) -> None:
        append(self.run_dir / REJECTED, {**what, "error": error})


def batches(entries: list[tuple[dict, int]]) -> list[list[tuple[dict, int]]]:
    """Consecutive metric entries travel together (one request for many steps after an outage); any other entry
    alone, so the order of params, tags, artifacts and status changes is kept."""
    out = []
    for op, run in groupby(entries, key=lambda e: e[0]["op"]):
        run = list(run)
        size = MAX_BATCH if op == "metrics" else 1  # 100 steps x a few metrics stays under 1000 per request
        out.extend(run[i:i + size] for i in range(0, len(run), size))
    return out


def find_or_create_run(client, record: RunRecord, run_dir: Path, start_ms: int | None) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(record.experiment)
    if exp is None:
        try:
            exp_id = client.create_experiment(record.experiment, artifact_location(record.tracking_uri))
        except MlflowException:  # created meanwhile by another job
            exp_id = client.get_experiment_by_name(record.experiment).experiment_id
    else:
        exp_id = exp.experiment_id
    # the run folder's tag finds a run this folder already created but could not record (killed in between)
    found = client.search_runs([exp_id], filter_string=f"tags.run_dir = {quote(str(run_dir))}", max_results=1,
                               order_by=["attributes.start_time DESC"])
    if found:
        return found[0].info.run_id
    run = client.create_run(exp_id, start_time=start_ms, run_name=record.run_name, tags={"run_dir": str(run_dir)})
    return run.info.run_id


def artifact_location(uri: str) -> str | None:
    """A sqlite store would put artifacts in ./mlruns of whatever folder the job was started from; keep them
    beside the database (for the default store: in the run folder). A server decides for itself."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()


def quote(value: str) -> str:
    return f'"{value}"' if "'" in value else f"'{value}'"


def send_metrics(client, run_id: str, entries: list[dict]) -> None:
    from mlflow.entities import Metric

    metrics = [Metric(k, float(v), e["ts"], e["step"]) for e in entries for k, v in e["values"].items()]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])


def send_params(client, run_id: str, entries: list[dict]) -> None:
    from mlflow.entities import Param

    # MLflow refuses to change a param; a resumed job (which may e.g. raise max_steps) keeps the first values,
    # and its full config is in the config.yaml artifact
    logged = client.get_run(run_id).data.params
    new = [Param(k, str(v)[:6000]) for e in entries for k, v in e["values"].items() if k not in logged]
    for i in range(0, len(new), MAX_BATCH):
        client.log_batch(run_id, params=new[i:i + MAX_BATCH])


def send_tags(client, run_id: str, entries: list[dict]) -> None:
    from mlflow.entities import RunTag

    tags = [RunTag(k, str(v)) for e in entries for k, v in e["values"].items()]
    for i in range(0, len(tags), MAX_BATCH):
        client.log_batch(run_id, tags=tags[i:i + MAX_BATCH])


def send_artifacts(client, run_id: str, entries: list[dict]) -> None:
    for e in entries:
        path = Path(e["path"])
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=e.get("artifact_path"))
        elif path.is_file():
            client.log_artifact(run_id, str(path), artifact_path=e.get("artifact_path"))
        else:  # deleted before it could be delivered: nothing to send, and waiting would not bring it back
            log.warning("artifact %s no longer exists; not delivered", path)


def send_status(client, run_id: str, entries: list[dict]) -> None:
    for e in entries:
        if e["status"] == "RUNNING":
            client.update_run(run_id, status="RUNNING")
        else:  # the end time is when the job ended, not when the outbox reached the server
            client.set_terminated(run_id, status=e["status"], end_time=e.get("ts"))


SENDERS = {"metrics": send_metrics, "params": send_params, "tags": send_tags, "artifact": send_artifacts,
           "status": send_status}
