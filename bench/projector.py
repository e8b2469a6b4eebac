"""Status events applied per second by the projector's store into PostgreSQL.

    .venv/bin/python bench/projector.py [--jobs 20000] [--runs 3] [--batch 500]

Starts a throwaway PostgreSQL, and in each run a new migrated database; then applies the status
events of --jobs verify jobs as the projector does (SqlJobStore.apply_batch, one transaction a
poll batch of --batch events): each job's `queued` (a new row) and its final `succeeded` (an
update with the result), the outcome arriving a few hundred events after the job was queued,
as it does under load. No Kafka: this is the store's own limit. Prints the median events/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from anchorline.events import JobKind, JobRef, JobStatus, Stage, StageState, new_id, utcnow
from anchorline.infra.ports import free_ports
from anchorline.infra.postgres import PostgresServer
from anchorline.store.db import make_engine
from anchorline.store.migrate import upgrade
from anchorline_projector.store import SqlJobStore

LAG = 250  # events between a job's `queued` and its outcome
RESULT = json.dumps({"status": "OK", "fileHash": "0x" + "ab" * 32, "checks": {"manifestOk": True}})


def events_of(jobs: int) -> list[JobStatus]:
    now = utcnow()
    refs = [JobRef(new_id(), JobKind.VERIFY, now) for _ in range(jobs)]
    queued = [ref.status(Stage.VERIFY, StageState.QUEUED, attempt=1, progress=0) for ref in refs]
    done = [
        ref.status(
            Stage.VERIFY,
            StageState.SUCCEEDED,
            attempt=1,
            progress=100,
            result=RESULT,
            occurred_at=now + timedelta(seconds=1),
        )
        for ref in refs
    ]
    ordered: list[JobStatus] = []
    for index in range(jobs + LAG):
        if index < jobs:
            ordered.append(queued[index])
        if index >= LAG:
            ordered.append(done[index - LAG])
    return ordered


def one_run(postgres: PostgresServer, *, jobs: int, batch: int) -> float:
    engine = make_engine(postgres.new_database("projector_bench"))
    upgrade(engine)
    store = SqlJobStore(engine)
    events = events_of(jobs)
    started = time.perf_counter()
    for start in range(0, len(events), batch):
        store.apply_batch(events[start : start + batch])
    elapsed = time.perf_counter() - started
    engine.dispose()
    return len(events) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500, help="events a transaction")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="anchorline-projector-bench-") as tmp:
        (port,) = free_ports(1)
        postgres = PostgresServer(state_dir=Path(tmp), port=port)
        with postgres:
            rates = []
            for run in range(args.runs):
                rates.append(one_run(postgres, jobs=args.jobs, batch=args.batch))
                print(f"run {run + 1}: {rates[-1]:,.0f} events/s", flush=True)
        postgres.remove()
    print(f"median: {statistics.median(rates):,.0f} status events/s applied into PostgreSQL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
