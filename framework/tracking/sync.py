"""`vt-mlflow-sync RUN_DIR [--tracking-uri URI]`: deliver what a run folder's outbox still holds to MLflow, e.g.
after a job that ended while the tracking server was down. Safe to run any time, also during training (one
deliverer at a time holds the folder's lock) and more than once (delivery is idempotent).

With --tracking-uri the run goes to another server: the whole outbox is delivered there, into a run of its own."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..entry import entry_point
from . import credentials
from .delivery import Delivery, configure_http, is_rejection
from .mlflow_tracker import short
from .outbox import OUTBOX, REJECTED, RunRecord, open_record


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vt-mlflow-sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--tracking-uri", help="deliver to this server instead of the one the run used")
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()
    record = RunRecord.load(run_dir)
    if record is None or not (run_dir / OUTBOX).is_file():
        parser.error(f"{args.run_dir} holds no MLflow outbox (no {OUTBOX} and mlflow_run.json)")
    if args.tracking_uri:
        uri = credentials.adopt(args.tracking_uri)  # user info used, not stored in mlflow_run.json
        record = open_record(run_dir, uri, record.experiment, record.run_name)
    configure_http()
    delivery = Delivery(run_dir)
    try:
        with progress_bar() as bar:
            delivered = delivery.drain(progress=bar.update)
    except Exception as e:
        what = "refused by" if is_rejection(e) else "cannot reach"
        print(f"vt-mlflow-sync: {what} {record.tracking_uri}: {short(e)}\nnothing is lost: "
              f"{delivery.pending_bytes()} bytes still wait in {run_dir / OUTBOX}; run this again later",
              file=sys.stderr)
        return 1
    record = RunRecord.load(run_dir)
    print(f"delivered {delivered} entries to MLflow run {record.run_id} at {record.tracking_uri}")
    if (run_dir / REJECTED).is_file():
        print(f"note: entries the server refused are kept in {run_dir / REJECTED}")
    return 0


def progress_bar():
    from tqdm import tqdm

    live = sys.stderr.isatty()  # in a log file one line every 30 s, not a flood
    return tqdm(desc="vt-mlflow-sync", unit=" entries", dynamic_ncols=live, mininterval=0.1 if live else 30.0)


if __name__ == "__main__":
    sys.exit(main())
