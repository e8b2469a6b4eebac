from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anchorline.events import JobStatus, Stage, StageState
from anchorline.store.db import job_events, jobs
from anchorline_projector.store import SqlJobStore

MakeStatus = Callable[..., JobStatus]
At = Callable[[float], datetime]


def job(engine: Engine, job_id: str = "job-1") -> dict[str, Any]:
    with engine.connect() as connection:
        record = connection.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).one()
    return dict(record._mapping)


def history(engine: Engine, job_id: str = "job-1") -> list[tuple[str, str, str, bool]]:
    query = (
        sa.select(
            job_events.c.event_id, job_events.c.stage, job_events.c.state, job_events.c.applied
        )
        .where(job_events.c.job_id == job_id)
        .order_by(job_events.c.id)
    )
    with engine.connect() as connection:
        return [tuple(record) for record in connection.execute(query)]  # type: ignore[misc]


def count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_a_batch_creates_and_moves_a_job(engine: Engine, make_status: MakeStatus, at: At) -> None:
    store = SqlJobStore(engine)
    changed = store.apply_batch(
        [
            make_status(StageState.QUEUED, at=0, tenant="acme"),
            make_status(StageState.RUNNING, at=1, progress=0, tenant="acme"),
            make_status(
                StageState.SUCCEEDED, at=2, progress=100, result='{"status": "OK"}', tenant="acme"
            ),
        ]
    )
    assert changed == 1
    row = job(engine)
    assert (row["state"], row["stage"], row["progress"], row["tenant"]) == (
        "running",
        "verify",
        100,
        "acme",
    )
    assert row["result"] == {"verify": {"status": "OK"}}
    assert row["started_at"] == at(1).replace(tzinfo=None)  # SQLite keeps no zone


def test_a_later_batch_updates_the_stored_row(
    engine: Engine, make_status: MakeStatus, at: At
) -> None:
    store = SqlJobStore(engine)
    store.apply_batch([make_status(StageState.SUCCEEDED, at=1, result='{"a": 1}')])
    changed = store.apply_batch(
        [make_status(StageState.SUCCEEDED, stage=Stage.PROVE, at=2, final=True, result="{}")]
    )
    assert changed == 1
    row = job(engine)
    assert (row["state"], row["stage"]) == ("succeeded", "prove")
    assert row["result"] == {"verify": {"a": 1}, "prove": {}}
    assert row["finished_at"] == at(2).replace(tzinfo=None)
    assert count(engine, jobs) == 1


def test_a_redelivered_event_is_applied_once(engine: Engine, make_status: MakeStatus) -> None:
    store = SqlJobStore(engine)
    event = make_status(StageState.RETRYING, at=1, error="rpc down")
    assert store.apply_batch([event]) == 1
    assert store.apply_batch([event]) == 0
    assert store.apply_batch([event, event]) == 0
    assert [entry[0] for entry in history(engine)] == [event.event_id]


def test_a_duplicate_inside_one_batch_is_applied_once(
    engine: Engine, make_status: MakeStatus
) -> None:
    event = make_status(StageState.QUEUED)
    assert SqlJobStore(engine).apply_batch([event, event]) == 1
    assert count(engine, job_events) == 1


def test_history_has_every_event_but_progress(engine: Engine, make_status: MakeStatus) -> None:
    events = [
        make_status(StageState.QUEUED, at=0, progress=0),
        make_status(StageState.RUNNING, at=1, progress=0),
        make_status(StageState.RUNNING, at=2, progress=30),
        make_status(StageState.RUNNING, at=3, progress=60),
        make_status(StageState.FAILED, at=4, final=True, error="bad"),
    ]
    SqlJobStore(engine).apply_batch(events)
    assert [(state, applied) for _, _, state, applied in history(engine)] == [
        ("queued", True),
        ("running", True),
        ("failed", True),
    ]
    assert job(engine)["progress"] == 60  # a failure carries no progress of its own
    assert job(engine)["error"] == "bad"


def test_an_out_of_order_batch_ends_where_the_job_is(
    engine: Engine, make_status: MakeStatus, at: At
) -> None:
    final = make_status(StageState.SUCCEEDED, stage=Stage.PROVE, at=4, final=True, result="{}")
    late = [
        make_status(StageState.RUNNING, stage=Stage.PROVE, at=3, progress=0),
        make_status(StageState.QUEUED, at=0),
    ]
    assert SqlJobStore(engine).apply_batch([final, *late]) == 1
    row = job(engine)
    assert (row["state"], row["stage"]) == ("succeeded", "prove")
    assert row["finished_at"] == at(4).replace(tzinfo=None)
    assert [(state, applied) for _, _, state, applied in history(engine)] == [
        ("succeeded", True),
        ("running", False),
        ("queued", False),
    ]


def test_stale_events_in_a_later_batch_change_nothing(
    engine: Engine, make_status: MakeStatus
) -> None:
    store = SqlJobStore(engine)
    store.apply_batch([make_status(StageState.FAILED, at=2, final=True, error="bad")])
    before = job(engine)
    assert store.apply_batch([make_status(StageState.RUNNING, at=1, progress=0)]) == 0
    assert job(engine) == before
    assert [applied for *_, applied in history(engine)] == [True, False]


def test_one_batch_moves_many_jobs(engine: Engine, make_status: MakeStatus) -> None:
    events = [make_status(StageState.QUEUED, job_id=f"job-{i}") for i in range(5)]
    events.append(make_status(StageState.RUNNING, job_id="job-2", at=1, progress=0))
    assert SqlJobStore(engine).apply_batch(events) == 5
    assert count(engine, jobs) == 5
    assert job(engine, "job-2")["state"] == "running"
    assert job(engine, "job-3")["state"] == "queued"


def test_an_empty_batch_touches_nothing(engine: Engine) -> None:
    assert SqlJobStore(engine).apply_batch([]) == 0
    assert count(engine, jobs) == 0


def test_result_is_stored_as_json(engine: Engine, make_status: MakeStatus) -> None:
    result = {"root": "0x01", "path": [{"position": "left", "hash": "0x02"}]}
    SqlJobStore(engine).apply_batch(
        [
            make_status(
                StageState.SUCCEEDED, stage=Stage.PROVE, final=True, result=json.dumps(result)
            )
        ]
    )
    assert job(engine)["result"] == {"prove": result}


def test_a_forged_status_is_refused_and_changes_nothing(
    engine: Engine, make_status: MakeStatus
) -> None:
    store = SqlJobStore(engine)
    store.apply_batch([make_status(StageState.SUCCEEDED, tenant="acme", final=True)])
    forged = make_status(StageState.FAILED, at=5, generation=7, tenant="mallory", error="pwned")
    refused: list[tuple[JobStatus, Exception]] = []
    assert store.apply_batch([forged], refuse=lambda *pair: refused.append(pair)) == 0
    assert [(event.event_id, "another tenant" in str(exc)) for event, exc in refused] == [
        (forged.event_id, True)
    ]
    row = job(engine)
    assert (row["state"], row["generation"], row["error"]) == ("succeeded", 0, None)


def test_a_job_keeps_the_first_trace_id_its_statuses_carry(
    engine: Engine, make_status: MakeStatus
) -> None:
    store = SqlJobStore(engine)
    queued = make_status(StageState.QUEUED)
    store.apply_batch([queued])  # no trace context: none kept
    assert job(engine)["trace_id"] is None
    running = make_status(StageState.RUNNING, at=1)
    late = make_status(StageState.QUEUED, at=2)  # changes nothing, yet brings a trace id
    store.apply_batch([late], traces={late.event_id: "a" * 32})
    assert job(engine)["trace_id"] == "a" * 32
    assert job(engine)["state"] == "queued"
    store.apply_batch([running], traces={running.event_id: "b" * 32})
    assert (job(engine)["trace_id"], job(engine)["state"]) == ("a" * 32, "running")
    assert [applied for *_, applied in history(engine)] == [True, False, True]


def test_a_replayed_status_is_applied_once_whether_its_job_had_a_row_or_not(
    engine: Engine, make_status: MakeStatus
) -> None:
    """Only events of jobs with a row are looked up among the known ones (a rowless job's were
    never applied): a webhook delivery, history without a row, is still looked up."""
    store = SqlJobStore(engine)
    delivery = make_status(StageState.SUCCEEDED, stage=Stage.NOTIFY, at=1)
    assert store.apply_batch([delivery]) == 0
    assert store.apply_batch([delivery]) == 0  # no second history entry (its key is unique)
    assert count(engine, jobs) == 0 and count(engine, job_events) == 1
    first = make_status(StageState.SUCCEEDED, at=2, result='{"a": 1}')
    assert store.apply_batch([first]) == 1
    assert store.apply_batch([first]) == 0
    assert [entry[0] for entry in history(engine)] == [delivery.event_id, first.event_id]
