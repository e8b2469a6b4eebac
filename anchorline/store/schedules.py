"""The schedules table and the occurrences it fired: the gateway writes and reads schedules,
the scheduler claims the due ones and records what it published."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from anchorline.events import Event, JobKind, JobRequested, submission
from anchorline.store.db import jobs, schedule_occurrences, schedules

ACTIVE, PAUSED, DONE, DELETED = "active", "paused", "done", "deleted"


def as_utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; every one we store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Schedule:
    """One row of the schedules table."""

    schedule_id: str
    tenant: str  # "" for no tenant
    template: dict[str, Any]
    cron: str | None
    timezone: str | None
    at: datetime | None
    state: str
    next_fire_at: datetime | None
    fired: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Firing:
    """What one claim of a due schedule does: the occurrence it fires, and what comes next."""

    scheduled_for: datetime
    next_fire_at: datetime | None  # None: the schedule is done


@dataclass(frozen=True)
class Occurrence:
    """An occurrence to publish: its job's id and the schedule's template."""

    schedule_id: str
    scheduled_for: datetime
    job_id: str
    tenant: str
    template: dict[str, Any]


Plan = Callable[[Schedule, datetime], Firing]


def occurrence_job_id(schedule_id: str, scheduled_for: datetime) -> str:
    """The job id of an occurrence: the same whoever fires it, however often."""
    moment = scheduled_for.astimezone(UTC)
    return f"{schedule_id}:{moment:%Y%m%dT%H%M%S}.{moment.microsecond // 1000:03d}Z"


def template_of(job: JobRequested) -> dict[str, Any]:
    """What a schedule keeps of a checked job request: everything but its id, time and tenant."""
    return {
        "kind": str(job.kind),
        "content_uri": job.content_uri,
        "manifest": job.manifest,
        "signature": job.signature,
        "signature_scheme": job.signature_scheme,
        "callback_url": job.callback_url,
    }


def job_of(occurrence: Occurrence) -> list[Event]:
    """What firing an occurrence publishes: its job, as the gateway would submit it."""
    template = occurrence.template
    job = JobRequested(
        job_id=occurrence.job_id,
        kind=JobKind(template["kind"]),
        content_uri=template["content_uri"],
        manifest=template["manifest"],
        signature=template["signature"],
        signature_scheme=template["signature_scheme"],
        submitted_at=occurrence.scheduled_for,
        tenant=occurrence.tenant or None,
        callback_url=template["callback_url"],
        schedule_id=occurrence.schedule_id,
    )
    return submission(job)


def _schedule(record: Any) -> Schedule:
    values = dict(record._mapping)
    for name in ("at", "next_fire_at", "created_at", "updated_at"):
        if values[name] is not None:
            values[name] = as_utc(values[name])
    return Schedule(**values)


class SqlSchedules:
    """Schedules on the job store's database (PostgreSQL, or SQLite for a local run)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def close(self) -> None:
        self.engine.dispose()

    # --- the API's side --------------------------------------------------------------------

    def create(self, schedule: Schedule) -> None:
        with self.engine.begin() as connection:
            connection.execute(schedules.insert().values(**schedule.__dict__))

    def count(self, *, tenant: str) -> int:
        """How many schedules the tenant keeps (deleted ones aside)."""
        query = sa.select(sa.func.count()).where(
            schedules.c.tenant == tenant, schedules.c.state != DELETED
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar() or 0)

    def get(self, schedule_id: str) -> Schedule | None:
        query = sa.select(schedules).where(
            schedules.c.schedule_id == schedule_id, schedules.c.state != DELETED
        )
        with self.engine.connect() as connection:
            record = connection.execute(query).first()
        return _schedule(record) if record else None

    def page(
        self, *, tenant: str | None, limit: int, after: tuple[datetime, str] | None
    ) -> list[Schedule]:
        """Newest first, after the (created_at, schedule_id) of the last one seen; every
        tenant's when `tenant` is None."""
        query = (
            sa.select(schedules)
            .where(schedules.c.state != DELETED)
            .order_by(schedules.c.created_at.desc(), schedules.c.schedule_id.desc())
            .limit(limit)
        )
        if tenant is not None:
            query = query.where(schedules.c.tenant == tenant)
        if after is not None:
            created, schedule_id = after
            query = query.where(
                sa.or_(
                    schedules.c.created_at < created,
                    sa.and_(
                        schedules.c.created_at == created, schedules.c.schedule_id < schedule_id
                    ),
                )
            )
        with self.engine.connect() as connection:
            return [_schedule(record) for record in connection.execute(query)]

    def occurrences(self, schedule_id: str, *, limit: int) -> list[dict[str, Any]]:
        """The latest occurrences, newest first, each with its job's row if the projector has
        written one (None before)."""
        occurrence = schedule_occurrences.c
        query = (
            sa.select(
                occurrence.scheduled_for,
                occurrence.due_since,
                occurrence.job_id,
                occurrence.fired_at,
                occurrence.published_at,
                jobs.c.state,
                jobs.c.stage,
                jobs.c.result,
                jobs.c.error,
                jobs.c.finished_at,
            )
            .select_from(schedule_occurrences.outerjoin(jobs, jobs.c.job_id == occurrence.job_id))
            .where(occurrence.schedule_id == schedule_id)
            .order_by(occurrence.scheduled_for.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [_occurrence_view(record) for record in connection.execute(query)]

    def schedule_of(self, job_id: str) -> str | None:
        """The schedule whose occurrence made the job, if one did."""
        query = sa.select(schedule_occurrences.c.schedule_id).where(
            schedule_occurrences.c.job_id == job_id
        )
        with self.engine.connect() as connection:
            found: str | None = connection.execute(query).scalar()
        return found

    def move(
        self,
        schedule_id: str,
        *,
        into: str,
        from_states: tuple[str, ...],
        next_fire_at: datetime | None,
        now: datetime,
    ) -> bool:
        """Move the schedule from one of `from_states` into `into`; whether it was in one."""
        update = (
            schedules.update()
            .where(schedules.c.schedule_id == schedule_id, schedules.c.state.in_(from_states))
            .values(state=into, next_fire_at=next_fire_at, updated_at=now)
        )
        with self.engine.begin() as connection:
            return connection.execute(update).rowcount == 1

    # --- the scheduler's side --------------------------------------------------------------

    def claim_due(
        self, now: datetime, *, plan: Plan, limit: int, lease_s: float
    ) -> list[Occurrence]:
        """Fire the schedules due at `now`: for each, in one transaction, its occurrence is
        recorded (leased to this caller for `lease_s`) and its next one set. Rows another
        scheduler holds are skipped (FOR UPDATE SKIP LOCKED on PostgreSQL; on SQLite, whose
        writers take turns, the update's own condition does the same)."""
        query = (
            sa.select(schedules)
            .where(schedules.c.state == ACTIVE, schedules.c.next_fire_at <= now)
            .order_by(schedules.c.next_fire_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claimed: list[Occurrence] = []
        with self.engine.begin() as connection:
            for record in list(connection.execute(query)):
                schedule = _schedule(record)
                occurrence = self._fire(connection, schedule, plan(schedule, now), now, lease_s)
                if occurrence is not None:
                    claimed.append(occurrence)
        return claimed

    def _fire(
        self,
        connection: Connection,
        schedule: Schedule,
        firing: Firing,
        now: datetime,
        lease_s: float,
    ) -> Occurrence | None:
        advance = (
            schedules.update()
            .where(
                schedules.c.schedule_id == schedule.schedule_id,
                schedules.c.state == ACTIVE,
                schedules.c.next_fire_at == schedule.next_fire_at,
            )
            .values(
                next_fire_at=firing.next_fire_at,
                state=ACTIVE if firing.next_fire_at is not None else DONE,
                fired=schedules.c.fired + 1,
                updated_at=now,
            )
        )
        if connection.execute(advance).rowcount != 1:
            return None  # another scheduler fired it between our read and our update
        job_id = occurrence_job_id(schedule.schedule_id, firing.scheduled_for)
        connection.execute(
            schedule_occurrences.insert().values(
                schedule_id=schedule.schedule_id,
                scheduled_for=firing.scheduled_for,
                job_id=job_id,
                tenant=schedule.tenant,
                due_since=schedule.next_fire_at,
                fired_at=now,
                lease_until=now + timedelta(seconds=lease_s),
            )
        )
        return Occurrence(
            schedule.schedule_id, firing.scheduled_for, job_id, schedule.tenant, schedule.template
        )

    def claim_unpublished(self, now: datetime, *, limit: int, lease_s: float) -> list[Occurrence]:
        """Occurrences whose lease ran out before they were published (their scheduler died, or
        Kafka did not take them), leased again to this caller; one whose job the jobs table
        already has is recorded published instead."""
        occurrence = schedule_occurrences.c
        query = (
            sa.select(
                occurrence.schedule_id,
                occurrence.scheduled_for,
                occurrence.job_id,
                occurrence.tenant,
                occurrence.lease_until,
                schedules.c.template,
            )
            .select_from(
                schedule_occurrences.join(
                    schedules, schedules.c.schedule_id == occurrence.schedule_id
                )
            )
            .where(occurrence.published_at.is_(None), occurrence.lease_until < now)
            .limit(limit)
        )
        taken: list[Occurrence] = []
        with self.engine.begin() as connection:
            for record in list(connection.execute(query)):
                lease = (
                    schedule_occurrences.update()
                    .where(
                        occurrence.job_id == record.job_id,
                        occurrence.published_at.is_(None),
                        occurrence.lease_until == record.lease_until,
                    )
                    .values(lease_until=now + timedelta(seconds=lease_s))
                )
                if connection.execute(lease).rowcount == 1:
                    taken.append(
                        Occurrence(
                            record.schedule_id,
                            as_utc(record.scheduled_for),
                            record.job_id,
                            record.tenant,
                            record.template,
                        )
                    )
        return self._not_seen(taken, now)

    def _not_seen(self, occurrences: list[Occurrence], now: datetime) -> list[Occurrence]:
        """The occurrences whose job the projector has not seen; the others were published
        (their scheduler died between Kafka's acknowledgement and its record of it) and are
        recorded so, rather than published again."""
        ids = [occurrence.job_id for occurrence in occurrences]
        if not ids:
            return []
        query = sa.select(jobs.c.job_id).where(jobs.c.job_id.in_(ids))
        with self.engine.connect() as connection:
            seen = set(connection.execute(query).scalars())
        self.published(sorted(seen), now)
        return [occurrence for occurrence in occurrences if occurrence.job_id not in seen]

    def published(self, job_ids: list[str], now: datetime) -> None:
        """Record that Kafka acknowledged these occurrences' jobs."""
        if not job_ids:
            return
        update = (
            schedule_occurrences.update()
            .where(
                schedule_occurrences.c.job_id.in_(job_ids),
                schedule_occurrences.c.published_at.is_(None),
            )
            .values(published_at=now, lease_until=None)
        )
        with self.engine.begin() as connection:
            connection.execute(update)


def _occurrence_view(record: Any) -> dict[str, Any]:
    row = dict(record._mapping)
    job = None
    if row["state"] is not None:
        job = {name: row[name] for name in ("state", "stage", "error")}
        job["result"] = row["result"] or {}
        job["finished_at"] = _iso(row["finished_at"])
    return {
        "scheduled_for": _iso(row["scheduled_for"]),
        "due_since": _iso(row["due_since"]),
        "job_id": row["job_id"],
        "fired_at": _iso(row["fired_at"]),
        "published_at": _iso(row["published_at"]),
        "job": job,
    }


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment is not None else None
