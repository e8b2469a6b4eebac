"""Status events applied per second by the projector's store into PostgreSQL.

    .venv/bin/python bench/projector.py [--jobs 20000] [--runs 3] [--batch 500] [--kind proof]

Starts a throwaway PostgreSQL, and in each run a new migrated database; then applies the status
events of --jobs verify jobs as the projector does (SqlJobStore.apply_batch, one transaction a
poll batch of --batch events): each job's `queued` (a new row) and its final `succeeded` (an
update with the result), the outcome arriving a few hundred events after the job was queued,
as it does under load. With --kind proof, three a job: `queued`, verify's `succeeded` and
prove's final `succeeded`, whose result (attestation, Merkle path) the real prover handler
made. No Kafka: this is the store's own limit. Prints the median events/s and CPU ms a job
(this process's and PostgreSQL's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import astuple, dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from perf.stack import postgres_cpu_seconds

from anchorline.events import (
    JobKind,
    JobRef,
    JobStatus,
    ProveRequested,
    Stage,
    StageState,
    new_id,
    utcnow,
)
from anchorline.infra.anvil import DEV_PRIVATE_KEYS
from anchorline.infra.ports import free_ports
from anchorline.infra.postgres import PostgresServer
from anchorline.settings import Settings
from anchorline.store.db import make_engine
from anchorline.store.migrate import upgrade
from anchorline_projector.store import SqlJobStore
from anchorline_prover.main import build_handler as prove_handler

LAG = 250  # events between a job's `queued` and its outcome
SIGNER = "0x" + "12" * 20
RESULT = json.dumps({"status": "OK", "fileHash": "0x" + "ab" * 32, "checks": {"manifestOk": True}})


@dataclass(frozen=True)
class Rate:
    events_s: float
    cpu_ms_per_job: float
    postgres_cpu_ms_per_job: float

    def __str__(self) -> str:
        return (
            f"{self.events_s:,.0f} status events/s, CPU ms a job: projector "
            f"{self.cpu_ms_per_job:.3f}, PostgreSQL {self.postgres_cpu_ms_per_job:.3f}"
        )


def proved(refs: list[JobRef]) -> list[str]:
    """The results the prover's handler gives these jobs, in batches of BATCH_MAX_JOBS."""
    settings = Settings.from_env(prover_private_key=DEV_PRIVATE_KEYS[1])
    handler = prove_handler(settings)
    requests = [
        ProveRequested(ref.job_id, ref.kind, "0x" + "cd" * 32, "0x" + "ef" * 32, SIGNER, now)
        for ref, now in ((ref, ref.submitted_at) for ref in refs)
    ]
    results: list[str] = []
    for start in range(0, len(requests), settings.batch_max_jobs):
        batch = requests[start : start + settings.batch_max_jobs]
        outputs = handler.handle(batch, lambda ref, percent: None)
        results += [out.result for out in outputs if isinstance(out, JobStatus) and out.result]
    return results


def events_of(jobs: int, *, kind: JobKind) -> list[JobStatus]:
    now = utcnow()
    refs = [JobRef(new_id(), kind, now) for _ in range(jobs)]

    def succeeded(ref: JobRef, stage: Stage, result: str, *, after_s: int) -> JobStatus:
        at = now + timedelta(seconds=after_s)
        return ref.status(
            stage, StageState.SUCCEEDED, attempt=1, progress=100, result=result, occurred_at=at
        )

    queued = [ref.status(Stage.VERIFY, StageState.QUEUED, attempt=1, progress=0) for ref in refs]
    done = [[succeeded(ref, Stage.VERIFY, RESULT, after_s=1)] for ref in refs]
    if kind is JobKind.PROOF:
        for ref, outcome, result in zip(refs, done, proved(refs), strict=True):
            outcome.append(succeeded(ref, Stage.PROVE, result, after_s=2))
    ordered: list[JobStatus] = []
    for index in range(jobs + LAG):
        if index < jobs:
            ordered.append(queued[index])
        if index >= LAG:
            ordered.extend(done[index - LAG])
    return ordered


def one_run(postgres: PostgresServer, *, jobs: int, batch: int, kind: JobKind) -> Rate:
    engine = make_engine(postgres.new_database("projector_bench"))
    upgrade(engine)
    store = SqlJobStore(engine)
    events = events_of(jobs, kind=kind)
    server = postgres_cpu_seconds(postgres)
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(events), batch):
        store.apply_batch(events[start : start + batch])
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    server = postgres_cpu_seconds(postgres) - server
    engine.dispose()
    return Rate(len(events) / elapsed, 1000 * cpu / jobs, 1000 * server / jobs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500, help="events a transaction")
    parser.add_argument("--kind", choices=["verify", "proof"], default="verify")
    args = parser.parse_args()
    kind = JobKind(args.kind)
    with tempfile.TemporaryDirectory(prefix="anchorline-projector-bench-") as tmp:
        (port,) = free_ports(1)
        postgres = PostgresServer(state_dir=Path(tmp), port=port)
        with postgres:
            rates = []
            for run in range(args.runs):
                rates.append(one_run(postgres, jobs=args.jobs, batch=args.batch, kind=kind))
                print(f"run {run + 1}: {rates[-1]}", flush=True)
        postgres.remove()
    median = Rate(*(statistics.median(values) for values in zip(*map(astuple, rates), strict=True)))
    print(f"median ({args.kind} jobs): {median} applied into PostgreSQL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
