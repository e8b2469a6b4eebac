"""The scheduler on the real PostgreSQL and the real broker: two processes fire each
occurrence once, a process killed and started again fires nothing twice and misses nothing
(the latest missed occurrence stands for those of its downtime), pause, resume and delete."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from confluent_kafka import Message
from kafka_helpers import read_topic, wait_for

from anchorline.events import JobRequested, new_id, utcnow
from anchorline.infra.postgres import PostgresServer
from anchorline.settings import Settings
from anchorline.store.db import make_engine, schedule_occurrences
from anchorline.store.migrate import upgrade
from anchorline.store.schedules import ACTIVE, PAUSED, Schedule, SqlSchedules
from anchorline.stream import codec
from anchorline_scheduler.main import build
from anchorline_scheduler.plan import plan

TEMPLATE = {
    "kind": "verify",
    "content_uri": "sha256:" + "ab" * 32,
    "manifest": "{}",
    "signature": "0x" + "11" * 65,
    "signature_scheme": "eip191",
    "callback_url": None,
}
EVERY_SECOND = "* * * * * *"


@pytest.fixture
def scheduling(settings: Settings, postgres: PostgresServer) -> Iterator[Settings]:
    """Settings of a scheduler on a migrated database of its own, at a one-second cadence."""
    configured = replace(
        settings,
        database_url=postgres.new_database("sched"),
        scheduler_tick_s=0.2,
        schedule_min_interval_s=1.0,
        scheduler_lease_s=3.0,
    )
    engine = make_engine(configured.db_url)
    upgrade(engine)
    engine.dispose()
    yield configured


@pytest.fixture
def store(scheduling: Settings) -> Iterator[SqlSchedules]:
    engine = make_engine(scheduling.db_url)
    yield SqlSchedules(engine)
    engine.dispose()


@pytest.fixture
def processes(scheduling: Settings) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """`anchorline run scheduler` processes; each still running is stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "anchorline.cli", "run", "scheduler"]
        process = subprocess.Popen(command, env=os.environ | scheduling.as_env())
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            process.wait(30)


def add(store: SqlSchedules, *, cron: str | None = EVERY_SECOND, at: datetime | None = None) -> str:
    now = utcnow()
    schedule_id = new_id()
    store.create(
        Schedule(
            schedule_id=schedule_id,
            tenant="acme",
            template=TEMPLATE,
            cron=cron,
            timezone="UTC" if cron else None,
            at=at,
            state=ACTIVE,
            next_fire_at=at or now.replace(microsecond=0) + timedelta(seconds=1),
            fired=0,
            created_at=now,
            updated_at=now,
        )
    )
    return schedule_id


def occurrences(store: SqlSchedules) -> list[sa.Row[tuple[str, datetime, datetime, str, object]]]:
    column = schedule_occurrences.c
    query = sa.select(
        column.schedule_id,
        column.scheduled_for,
        column.due_since,
        column.job_id,
        column.published_at,
    ).order_by(column.schedule_id, column.scheduled_for)
    with store.engine.connect() as connection:
        return list(connection.execute(query))


def published_requests(settings: Settings, expected: int) -> list[JobRequested]:
    """Every JobRequested on the topic, read until there are `expected` (or a minute passed)."""
    messages = read_topic(
        settings, settings.topics.jobs_requested, until=lambda found: len(found) >= expected
    )
    return [codec.decode(m.value(), JobRequested) for m in messages if isinstance(m, Message)]


def assert_each_fired_once_and_none_missed(settings: Settings, store: SqlSchedules) -> None:
    """Every occurrence recorded is on the topic exactly once, under its schedule, and every
    second between a schedule's first and last occurrence is one of them or fell in the
    downtime its next occurrence stood in for."""
    rows = wait_for(
        lambda: (found := occurrences(store)) and all(r.published_at for r in found) and found
    )
    requests = published_requests(settings, len(rows))
    ids = [request.job_id for request in requests]
    assert len(ids) == len(set(ids)), "a job was published twice"
    assert set(ids) == {row.job_id for row in rows}
    assert {r.job_id: r.schedule_id for r in requests} == {r.job_id: r.schedule_id for r in rows}
    by_schedule: dict[str, list[tuple[datetime, datetime]]] = {}
    for row in rows:
        by_schedule.setdefault(row.schedule_id, []).append((row.due_since, row.scheduled_for))
    for fired in by_schedule.values():
        for (_, previous), (due_since, scheduled_for) in itertools.pairwise(fired):
            assert due_since == previous + timedelta(seconds=1), "an occurrence was missed"
            assert scheduled_for >= due_since


def test_two_scheduler_processes_fire_each_occurrence_once(
    scheduling: Settings, store: SqlSchedules, processes: Callable[[], subprocess.Popen[bytes]]
) -> None:
    schedule_ids = [add(store) for _ in range(8)]
    once = add(store, cron=None, at=utcnow() + timedelta(seconds=2))
    first, second = processes(), processes()
    wait_for(lambda: all(s.fired >= 6 for s in map(store.get, schedule_ids) if s), timeout=90)
    for process in (first, second):
        process.send_signal(signal.SIGTERM)
    assert (first.wait(30), second.wait(30)) == (0, 0)
    assert_each_fired_once_and_none_missed(scheduling, store)
    one_time = store.get(once)
    assert one_time is not None and (one_time.state, one_time.fired) == ("done", 1)
    assert sum(1 for row in occurrences(store) if row.schedule_id == once) == 1


def test_a_scheduler_killed_and_started_again_fires_nothing_twice_and_misses_nothing(
    scheduling: Settings, store: SqlSchedules, processes: Callable[[], subprocess.Popen[bytes]]
) -> None:
    schedule_ids = [add(store) for _ in range(4)]
    first = processes()
    wait_for(lambda: all(s.fired >= 3 for s in map(store.get, schedule_ids) if s), timeout=90)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    fired_before = {s: store.get(s).fired for s in schedule_ids}  # type: ignore[union-attr]
    threading.Event().wait(2.5)  # occurrences fall due while none runs
    second = processes()
    wait_for(
        lambda: all(store.get(s).fired >= fired_before[s] + 3 for s in schedule_ids),  # type: ignore[union-attr]
        timeout=90,
    )
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    assert_each_fired_once_and_none_missed(scheduling, store)
    downtime = [row for row in occurrences(store) if row.scheduled_for > row.due_since]
    assert downtime, "the restarted scheduler should have fired the latest occurrence missed"


def test_an_occurrence_claimed_by_a_scheduler_that_died_is_published_once_by_another(
    scheduling: Settings, store: SqlSchedules, running: Callable[..., threading.Thread]
) -> None:
    schedule_id = add(store, cron=None, at=utcnow())
    dead = SqlSchedules(store.engine)  # claims, then dies before publishing
    (claimed,) = dead.claim_due(
        utcnow(), plan=lambda s, now: plan(s, now, floor_s=1), limit=10, lease_s=1
    )
    running(build(scheduling).run)
    wait_for(lambda: all(row.published_at for row in occurrences(store)))
    (request,) = published_requests(scheduling, 1)
    assert (request.job_id, request.schedule_id) == (claimed.job_id, schedule_id)


def test_a_paused_schedule_fires_nothing_until_resumed_and_a_deleted_one_never_again(
    scheduling: Settings, store: SqlSchedules, running: Callable[..., threading.Thread]
) -> None:
    schedule_id = add(store)
    running(build(scheduling).run)
    wait_for(lambda: store.get(schedule_id).fired >= 2)  # type: ignore[union-attr]
    assert store.move(
        schedule_id, into=PAUSED, from_states=(ACTIVE,), next_fire_at=None, now=utcnow()
    )
    paused_at = store.get(schedule_id).fired  # type: ignore[union-attr]
    threading.Event().wait(2.5)
    assert store.get(schedule_id).fired == paused_at  # type: ignore[union-attr]
    resume_at = utcnow().replace(microsecond=0) + timedelta(seconds=1)
    assert store.move(
        schedule_id, into=ACTIVE, from_states=(PAUSED,), next_fire_at=resume_at, now=utcnow()
    )
    wait_for(lambda: store.get(schedule_id).fired >= paused_at + 2)  # type: ignore[union-attr]
    assert store.move(
        schedule_id, into="deleted", from_states=(ACTIVE,), next_fire_at=None, now=utcnow()
    )
    deleted_at = len(occurrences(store))
    threading.Event().wait(2.5)
    rows = occurrences(store)
    assert len(rows) == deleted_at
    fired = [row.scheduled_for for row in rows]
    assert not [t for t in fired if resume_at - timedelta(seconds=2.5) < t < resume_at]
    published_requests(scheduling, len(rows))
