"""The projector from the real status topic into the real PostgreSQL jobs table."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from kafka_helpers import publish

from anchorline.db import job_events, jobs, make_engine
from anchorline.events import JobKind, JobRef, Stage, StageState, new_id, utcnow
from anchorline.infra.postgres import PostgresServer
from anchorline.migrate import upgrade
from anchorline.settings import Settings
from anchorline_projector.service import Projector
from anchorline_projector.store import SqlJobStore


@pytest.fixture
def engine(postgres: PostgresServer) -> Iterator[sa.Engine]:
    schema = f"s{uuid.uuid4().hex[:10]}"
    admin = make_engine(postgres.url)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    engine = sa.create_engine(postgres.url, connect_args={"options": f"-csearch_path={schema}"})
    upgrade(engine)
    yield engine
    engine.dispose()


def wait_for(check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_projector_applies_topic_in_order_and_ignores_stale(
    settings: Settings, engine: sa.Engine, running
) -> None:
    ref = JobRef(new_id(), JobKind.PROOF, submitted_at=utcnow())
    now = utcnow()
    queued = ref.status(Stage.VERIFY, StageState.QUEUED, occurred_at=now)
    verified = ref.status(
        Stage.VERIFY,
        StageState.SUCCEEDED,
        result='{"status": "OK"}',
        occurred_at=now + timedelta(seconds=1),
    )
    late_running = ref.status(Stage.VERIFY, StageState.RUNNING, occurred_at=now)
    proved = ref.status(
        Stage.PROVE,
        StageState.SUCCEEDED,
        result='{"root": "0xab"}',
        occurred_at=now + timedelta(seconds=2),
    )
    publish(settings, queued, verified, late_running, proved, proved)
    running(Projector(settings, SqlJobStore(engine)).run)

    def finished():  # type: ignore[no-untyped-def]
        with engine.connect() as connection:
            return connection.execute(
                sa.select(jobs).where(jobs.c.job_id == ref.job_id, jobs.c.state == "succeeded")
            ).first()

    row = wait_for(finished)
    assert row.stage == "prove"
    assert row.result == {"verify": {"status": "OK"}, "prove": {"root": "0xab"}}
    assert row.finished_at is not None
    with engine.connect() as connection:
        history = connection.execute(
            sa.select(job_events.c.state, job_events.c.applied)
            .where(job_events.c.job_id == ref.job_id)
            .order_by(job_events.c.id)
        ).all()
    assert [tuple(entry) for entry in history] == [
        ("queued", True),
        ("succeeded", True),
        ("running", False),
        ("succeeded", True),
    ]


def test_store_is_idempotent_on_postgres(engine: sa.Engine) -> None:
    store = SqlJobStore(engine)
    ref = JobRef(new_id(), JobKind.VERIFY, submitted_at=utcnow())
    done = ref.status(Stage.VERIFY, StageState.SUCCEEDED, result='{"status": "OK"}')

    assert store.apply_batch([done]) == 1
    assert store.apply_batch([done]) == 0
    with engine.connect() as connection:
        count = connection.execute(
            sa.select(sa.func.count())
            .select_from(job_events)
            .where(job_events.c.job_id == ref.job_id)
        ).scalar_one()
    assert count == 1
