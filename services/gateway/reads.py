"""Reads of the jobs table for status, lists and stats (the gateway never writes it)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anchorline.events import JOB_ID_RE
from anchorline.store.db import job_events, job_requests, jobs
from anchorline.untrusted import parse_json
from anchorline_gateway.problems import BadRequest

MAX_CURSOR_BYTES = 512


MAX_PAGE = 200  # items a list route answers with at most


def page_limit(params: Mapping[str, str]) -> int:
    """A list route's `limit` (50 unless given); BadRequest unless it is 1 to MAX_PAGE."""
    try:
        limit = int(params.get("limit", "50"))
    except ValueError:
        raise BadRequest("limit must be an integer") from None
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    return limit


class BadCursor(ValueError):
    """A list cursor that this gateway did not hand out."""


def encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = parse_json(raw, what="cursor", max_bytes=MAX_CURSOR_BYTES, max_depth=1)
        moment = datetime.fromisoformat(created)
    except (ValueError, TypeError) as exc:
        raise BadCursor("cursor is not one this API returned") from exc
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        raise BadCursor("cursor is not one this API returned")
    return moment, job_id


@dataclass(frozen=True)
class JobRun:
    """Where a job's current run stands: what cancelling or retrying it needs to know."""

    job_id: str
    kind: str
    state: str
    stage: str
    attempts: int
    generation: int
    tenant: str | None
    submitted_at: datetime


class JobReader(Protocol):
    """The read side the gateway needs."""

    def get(self, job_id: str) -> dict[str, Any] | None: ...

    def run_of(self, job_id: str) -> JobRun | None: ...

    def request_of(self, job_id: str) -> bytes | None: ...

    def history(self, job_id: str) -> list[dict[str, Any]]: ...

    def list(
        self,
        *,
        state: str | None,
        kind: str | None,
        limit: int,
        cursor: str | None,
        tenant: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of jobs, newest first, created from `since` up to (not at) `until`."""
        ...

    def stats(self, *, tenant: str | None = None) -> dict[str, Any]: ...


def public(record: Any) -> dict[str, Any]:
    row = dict(record._mapping)
    for name in ("rank_stage", "rank_state", "generation"):
        row.pop(name, None)
    for name, value in row.items():
        if isinstance(value, datetime):
            row[name] = as_utc(value).isoformat()
    row["result"] = row["result"] or {}
    row["priority"] = row.get("priority") or "normal"  # a job from before priorities
    return row


def as_utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; every one we store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class SqlJobReader:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            record = connection.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).first()
        return public(record) if record else None

    def run_of(self, job_id: str) -> JobRun | None:
        with self.engine.connect() as connection:
            record = connection.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).first()
        if record is None:
            return None
        return JobRun(
            job_id=record.job_id,
            kind=record.kind,
            state=record.state,
            stage=record.stage,
            attempts=record.attempts,
            generation=record.generation,
            tenant=record.tenant,
            submitted_at=as_utc(record.created_at),
        )

    def request_of(self, job_id: str) -> bytes | None:
        query = sa.select(job_requests.c.value).where(job_requests.c.job_id == job_id)
        with self.engine.connect() as connection:
            value = connection.execute(query).scalar()
        return bytes(value) if value is not None else None

    def history(self, job_id: str) -> list[dict[str, Any]]:
        query = (
            sa.select(
                job_events.c.stage,
                job_events.c.state,
                job_events.c.attempt,
                job_events.c.generation,
                job_events.c.applied,
                job_events.c.error,
                job_events.c.note,
                job_events.c.occurred_at,
            )
            .where(job_events.c.job_id == job_id)
            .order_by(job_events.c.id)
        )
        with self.engine.connect() as connection:
            rows = [dict(record._mapping) for record in connection.execute(query)]
        for row in rows:
            row["occurred_at"] = as_utc(row["occurred_at"]).isoformat()
        return rows

    def list(
        self,
        *,
        state: str | None,
        kind: str | None,
        limit: int,
        cursor: str | None,
        tenant: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        query = sa.select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.job_id.desc())
        if tenant is not None:
            query = query.where(jobs.c.tenant == tenant)
        if state:
            query = query.where(jobs.c.state == state)
        if kind:
            query = query.where(jobs.c.kind == kind)
        if since is not None:
            query = query.where(jobs.c.created_at >= since)
        if until is not None:
            query = query.where(jobs.c.created_at < until)
        if cursor:
            created, job_id = decode_cursor(cursor)
            query = query.where(
                sa.or_(
                    jobs.c.created_at < created,
                    sa.and_(jobs.c.created_at == created, jobs.c.job_id < job_id),
                )
            )
        with self.engine.connect() as connection:
            records = list(connection.execute(query.limit(limit + 1)))
        page = records[:limit]
        more = len(records) > limit
        next_cursor = encode_cursor(page[-1].created_at, page[-1].job_id) if more else None
        return [public(record) for record in page], next_cursor

    def stats(self, *, tenant: str | None = None) -> dict[str, Any]:
        query = sa.select(jobs.c.kind, jobs.c.state, sa.func.count()).group_by(
            jobs.c.kind, jobs.c.state
        )
        if tenant is not None:
            query = query.where(jobs.c.tenant == tenant)
        by_state: dict[str, int] = {}
        by_kind: dict[str, dict[str, int]] = {}
        with self.engine.connect() as connection:
            for kind, state, count in connection.execute(query):
                by_state[state] = by_state.get(state, 0) + count
                by_kind.setdefault(kind, {})[state] = count
        return {"total": sum(by_state.values()), "by_state": by_state, "by_kind": by_kind}
