"""What MLflow tracking costs the training loop, with a real local `mlflow server`.

`python -m bench.mlflow_logging [--steps N] [--out docs/BENCHMARKS.md]` prints JSON and writes a section:
- the time one `log_metrics` call takes in the training thread (the outbox append), with the server up and down;
- the same step logged synchronously with MlflowClient.log_batch (what a tracker without an outbox waits for);
- how fast the courier delivers a backlog once a server is reachable.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from framework.tracking.delivery import Delivery, configure_http
from framework.tracking.mlflow_tracker import MlflowTracker
from framework.tracking.outbox import RunRecord, open_record
from framework.env import free_port
from framework.tracking.server import LocalServer

METRICS = {"train/loss": 0.5, "train/accuracy": 0.8, "train/lr": 1e-3, "train/epoch": 0}


def summary(seconds: list[float]) -> dict:
    ms = sorted(s * 1e3 for s in seconds)
    return {"mean_ms": round(statistics.mean(ms), 4), "p50_ms": round(ms[len(ms) // 2], 4),
            "p99_ms": round(ms[int(len(ms) * 0.99)], 4), "max_ms": round(ms[-1], 4)}


def timed_tracker(run_dir: Path, uri: str, steps: int) -> dict:
    cfg = SimpleNamespace(tracking_uri=uri, experiment="bench", run_name=None, system_metrics_every_s=10.0,
                          log_checkpoint=False)
    tracker = MlflowTracker(run_dir, cfg, "bench", tags={})
    times = []
    for step in range(1, steps + 1):
        t = time.perf_counter()
        tracker.log_metrics(METRICS, step)
        times.append(time.perf_counter() - t)
        time.sleep(0.002)  # a (very fast) training step between calls
    tracker.close()  # with the server down: a warning, and the entries stay for timed_backlog
    return summary(times)


def timed_direct(uri: str, steps: int) -> dict:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("bench")
    run_id = client.create_run(exp.experiment_id if exp else client.create_experiment("bench")).info.run_id
    times = []
    for step in range(1, steps + 1):
        t = time.perf_counter()
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in METRICS.items()])
        times.append(time.perf_counter() - t)
    return summary(times)


def timed_backlog(run_dir: Path, uri: str) -> dict:
    """Deliver an outbox written while no server answered to a live one (what vt-mlflow-sync does)."""
    record = RunRecord.load(run_dir)
    open_record(run_dir, uri, record.experiment, record.run_name)
    t = time.perf_counter()
    entries = Delivery(run_dir).drain()
    seconds = time.perf_counter() - t
    return {"entries": entries, "seconds": round(seconds, 3), "entries_per_s": round(entries / seconds)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--out", type=Path, help="write a section into this markdown file")
    args = parser.parse_args(argv)
    import torch  # noqa: F401  imported as in training, so the first system-metrics sample does not time an import

    configure_http()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        server = LocalServer(tmp / "server")
        server.root.mkdir()
        down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        results = {"log_metrics_server_down": timed_tracker(tmp / "down", down, args.steps)}
        server.start()
        try:
            results["log_metrics_server_up"] = timed_tracker(tmp / "up", server.uri, args.steps)
            results["log_batch_synchronous_server_up"] = timed_direct(server.uri, args.steps)
            results["backlog_delivery"] = timed_backlog(tmp / "down", server.uri)
        finally:
            server.stop()
    results["steps"] = args.steps
    results["load_average_1min"] = round(os.getloadavg()[0], 1)  # a shared machine's load inflates the server side
    print(json.dumps(results, indent=1))
    if args.out:
        write(args.out, results)
    return 0


def write(doc: Path, r: dict) -> None:
    from .report import machine, write_section

    rows = [("`log_metrics` (outbox append), server up", r["log_metrics_server_up"]),
            ("`log_metrics` (outbox append), server unreachable", r["log_metrics_server_down"]),
            ("`MlflowClient.log_batch` synchronously, server up", r["log_batch_synchronous_server_up"])]
    table = "\n".join(f"| {name} | {s['mean_ms']} | {s['p50_ms']} | {s['p99_ms']} | {s['max_ms']} |"
                      for name, s in rows)
    b = r["backlog_delivery"]
    write_section(doc, "mlflow_logging", f"""
## MLflow logging cost (`python -m bench.mlflow_logging --out docs/BENCHMARKS.md`)

Machine: {machine()}, load average {r['load_average_1min']} at the end (shared). A local `mlflow server`
(sqlite, 1 worker) on 127.0.0.1; {r['steps']} steps of 4 metrics (plus system metrics every 10 s). Time the
training thread spends per logging call, in ms:

| call | mean | p50 | p99 | max |
|---|---|---|---|---|
{table}

A backlog of {b['entries']} outbox entries written while no server answered was delivered in {b['seconds']} s
({b['entries_per_s']} entries/s, metrics batched up to 100 steps per request).
""")


if __name__ == "__main__":
    raise SystemExit(main())
