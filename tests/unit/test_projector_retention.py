"""JOB_RETENTION_S: the projector deletes jobs that ended long enough ago, with their history and
kept request, and never a job still in flight."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anchorline.events import JobKind, JobRequested, StageState
from anchorline.settings import Settings
from anchorline.store.db import job_events, job_requests, jobs
from anchorline.stream import codec
from anchorline_projector.service import Projector
from anchorline_projector.store import SqlJobStore


def request(job_id: str, make_status: Any) -> tuple[bytes, bytes]:
    event = JobRequested(
        job_id, JobKind.VERIFY, "sha256:" + "0" * 64, "{}", "0x", make_status().occurred_at
    )
    return job_id.encode(), codec.encode(event)


def ids(engine: Engine, table: sa.Table) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(sa.select(table.c.job_id)).scalars())


def test_jobs_that_ended_before_the_cutoff_go_with_their_history_and_request(
    engine: Engine, make_status: Any, at: Callable[[float], datetime]
) -> None:
    store = SqlJobStore(engine)
    store.apply_batch(
        [
            make_status(StageState.QUEUED, job_id="old-done", at=0),
            make_status(StageState.SUCCEEDED, job_id="old-done", final=True, at=10),
            make_status(StageState.QUEUED, job_id="old-running", at=0),
            make_status(StageState.RUNNING, job_id="old-running", at=10),
            make_status(StageState.QUEUED, job_id="late-done", at=0),
            make_status(StageState.FAILED, job_id="late-done", error="no", at=500),
        ],
        requests=[request(job_id, make_status) for job_id in ("old-done", "late-done")],
    )
    assert store.prune(at(100)) == 1
    assert ids(engine, jobs) == {"old-running", "late-done"}
    assert "old-done" not in ids(engine, job_events) | ids(engine, job_requests)
    assert ids(engine, job_requests) == {"late-done"}
    assert store.prune(at(100)) == 0
    assert store.prune(at(1000)) == 1, "a job in flight stays, however old"
    assert ids(engine, jobs) == {"old-running"}


def test_pruning_goes_in_bounded_transactions(
    engine: Engine, make_status: Any, at: Callable[[float], datetime]
) -> None:
    store = SqlJobStore(engine)
    store.apply_batch([make_status(StageState.DEAD, job_id=f"job-{n}", at=1) for n in range(5)])
    assert [store.prune(at(100), limit=2) for _ in range(4)] == [2, 2, 1, 0]


def test_the_projector_prunes_only_with_a_retention_and_then_once_a_while(
    engine: Engine, make_status: Any
) -> None:
    class Counting(SqlJobStore):
        calls = 0

        def prune(self, before: datetime, *, limit: int = 5000) -> int:
            Counting.calls += 1
            return 0

    store = Counting(engine)
    keep = Projector(Settings(kafka_bootstrap="127.0.0.1:1"), store)
    keep._prune_now_and_then()
    assert Counting.calls == 0, "no JOB_RETENTION_S: every job is kept"
    keep.consumer.close()
    pruning = Projector(Settings(kafka_bootstrap="127.0.0.1:1", job_retention_s=86400), store)
    pruning._prune_now_and_then()
    pruning._prune_now_and_then()
    assert Counting.calls == 1, "then not again before PRUNE_EVERY_S"
    pruning.consumer.close()
