"""The scheduler's logic on a migrated SQLite store, an in-memory publisher and a clock the
test moves: each occurrence fires once, the latest missed one after downtime, none while
paused; a job Kafka did not take is published again with the same id."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from anchorline.events import JobRequested, JobStatus, StageState
from anchorline.store.schedules import (
    ACTIVE,
    DONE,
    PAUSED,
    Schedule,
    SqlSchedules,
    job_of,
    occurrence_job_id,
)
from anchorline.stream.publisher import MemoryPublisher
from anchorline_projector.store import SqlJobStore
from anchorline_scheduler.plan import plan
from anchorline_scheduler.service import Scheduler

START = datetime(2026, 11, 30, 6, 0, 0, tzinfo=UTC)
TEMPLATE = {
    "kind": "verify",
    "content_uri": "sha256:" + "ab" * 32,
    "manifest": "{}",
    "signature": "0x" + "11" * 65,
    "signature_scheme": "eip191",
    "callback_url": None,
}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def schedule(
    schedule_id: str = "s1", *, cron: str | None = "*/5 * * * * *", at: datetime | None = None
) -> Schedule:
    return Schedule(
        schedule_id=schedule_id,
        tenant="acme",
        template=TEMPLATE,
        cron=cron,
        timezone="UTC" if cron else None,
        at=at,
        state=ACTIVE,
        next_fire_at=START + timedelta(seconds=5) if cron else at,
        fired=0,
        created_at=START,
        updated_at=START,
    )


@pytest.fixture
def store(engine: Engine) -> SqlSchedules:
    return SqlSchedules(engine)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def scheduler(store: SqlSchedules, publisher: MemoryPublisher, clock: Clock) -> Scheduler:
    return Scheduler(store, publisher, tick_s=1, floor_s=1, lease_s=30, clock=clock)


def requests(publisher: MemoryPublisher) -> list[JobRequested]:
    return [event for event in publisher.events if isinstance(event, JobRequested)]


def run_until(scheduler: Scheduler, clock: Clock, until: datetime, *, step_s: float = 1) -> None:
    while clock.now < until:
        clock.now += timedelta(seconds=step_s)
        asyncio.run(scheduler.tick())


def test_each_occurrence_fires_once_as_a_queued_job_of_its_schedule(
    store: SqlSchedules, publisher: MemoryPublisher, clock: Clock
) -> None:
    store.create(schedule())
    run_until(scheduler(store, publisher, clock), clock, START + timedelta(seconds=20))
    fired = requests(publisher)
    assert [job.submitted_at for job in fired] == [
        START + timedelta(seconds=s) for s in (5, 10, 15, 20)
    ]
    assert {job.schedule_id for job in fired} == {"s1"}
    assert all(job.tenant == "acme" and job.content_uri == TEMPLATE["content_uri"] for job in fired)
    assert [job.job_id for job in fired] == [
        occurrence_job_id("s1", job.submitted_at) for job in fired
    ]
    queued = [e for e in publisher.events if isinstance(e, JobStatus)]
    assert [(s.job_id, s.state) for s in queued] == [(j.job_id, StageState.QUEUED) for j in fired]
    assert [o["published_at"] is not None for o in store.occurrences("s1", limit=10)] == [True] * 4


def test_after_downtime_only_the_latest_missed_occurrence_fires(
    store: SqlSchedules, publisher: MemoryPublisher, clock: Clock
) -> None:
    store.create(schedule())
    clock.now = START + timedelta(seconds=33)  # 5 … 30 missed
    asyncio.run(scheduler(store, publisher, clock).tick())
    (job,) = requests(publisher)
    assert job.submitted_at == START + timedelta(seconds=30)
    (occurrence,) = store.occurrences("s1", limit=10)
    assert occurrence["due_since"] == (START + timedelta(seconds=5)).isoformat()
    again = store.get("s1")
    assert again is not None and again.next_fire_at == START + timedelta(seconds=35)


def test_two_schedulers_on_one_store_fire_each_occurrence_once(
    store: SqlSchedules, clock: Clock
) -> None:
    for n in range(5):
        store.create(schedule(f"s{n}"))
    one, two = MemoryPublisher(), MemoryPublisher()
    first, second = scheduler(store, one, clock), scheduler(store, two, clock)
    while clock.now < START + timedelta(seconds=30):
        clock.now += timedelta(seconds=1)
        for each in (first, second) if clock.now.second % 2 else (second, first):
            asyncio.run(each.tick())
    ids = [job.job_id for job in requests(one) + requests(two)]
    assert len(ids) == len(set(ids)) == 5 * 6


def test_a_job_kafka_did_not_take_is_published_again_with_its_id_once_its_lease_ends(
    store: SqlSchedules, publisher: MemoryPublisher, clock: Clock
) -> None:
    store.create(schedule(cron=None, at=START + timedelta(seconds=1)))
    running = scheduler(store, publisher, clock)
    publisher.down = True
    run_until(running, clock, START + timedelta(seconds=2))
    publisher.down = False
    run_until(running, clock, START + timedelta(seconds=20))  # within the lease: nothing
    assert requests(publisher) == []
    run_until(running, clock, START + timedelta(seconds=40))
    (job,) = requests(publisher)
    assert job.job_id == occurrence_job_id("s1", START + timedelta(seconds=1))
    done = store.get("s1")
    assert done is not None and (done.state, done.fired, done.next_fire_at) == (DONE, 1, None)


def test_a_one_time_schedule_fires_once(
    store: SqlSchedules, publisher: MemoryPublisher, clock: Clock
) -> None:
    store.create(schedule(cron=None, at=START + timedelta(seconds=3)))
    run_until(scheduler(store, publisher, clock), clock, START + timedelta(seconds=10))
    assert [job.submitted_at for job in requests(publisher)] == [START + timedelta(seconds=3)]


def test_a_paused_schedule_fires_nothing(
    store: SqlSchedules, publisher: MemoryPublisher, clock: Clock
) -> None:
    store.create(schedule())
    assert store.move("s1", into=PAUSED, from_states=(ACTIVE,), next_fire_at=None, now=START)
    run_until(scheduler(store, publisher, clock), clock, START + timedelta(seconds=20))
    assert requests(publisher) == []
    assert not store.move("s1", into=PAUSED, from_states=(ACTIVE,), next_fire_at=None, now=START)


def test_the_next_occurrence_keeps_the_floor_whatever_the_cron_says() -> None:
    firing = plan(schedule(cron="*/5 * * * * *"), START + timedelta(seconds=5), floor_s=12)
    assert firing.scheduled_for == START + timedelta(seconds=5)
    assert firing.next_fire_at == START + timedelta(seconds=20)


def test_an_occurrence_published_before_its_scheduler_died_is_not_published_again(
    store: SqlSchedules, publisher: MemoryPublisher, clock: Clock, engine: Engine
) -> None:
    """Its scheduler died after Kafka's acknowledgement, before recording it: the projector has
    the job, so the occurrence is recorded published once its lease ends, not sent again."""
    store.create(schedule(cron=None, at=START))
    (claimed,) = store.claim_due(
        START, plan=lambda s, now: plan(s, now, floor_s=1), limit=10, lease_s=30
    )
    SqlJobStore(engine).apply_batch([e for e in job_of(claimed) if isinstance(e, JobStatus)])
    run_until(scheduler(store, publisher, clock), clock, START + timedelta(seconds=40))
    assert publisher.events == []
    (occurrence,) = store.occurrences("s1", limit=10)
    assert occurrence["published_at"] is not None and occurrence["job"]["state"] == "queued"
