"""Schedules through the API: a job request and when to run it (a cron expression, or once).

The gateway only records schedules; the scheduler fires them. Each is its tenant's alone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from anchorline.cadence import Cron, parse_at, parse_cron
from anchorline.errors import BadInput
from anchorline.events import new_id, utcnow
from anchorline.store.schedules import (
    ACTIVE,
    DELETED,
    DONE,
    PAUSED,
    Schedule,
    SqlSchedules,
    template_of,
)
from anchorline_gateway.auth import owner, tenant_of, visible
from anchorline_gateway.limits import read_json
from anchorline_gateway.problems import BadRequest, problem
from anchorline_gateway.reads import (
    JOB_ID_RE,
    BadCursor,
    decode_cursor,
    encode_cursor,
    page_limit,
)
from anchorline_gateway.submission import JSON_FIELDS, job_request, json_fields, unknown_fields

if TYPE_CHECKING:
    from anchorline_gateway.app import Gateway

WHEN_FIELDS = ("cron", "timezone", "at")
RECENT = 20  # occurrences shown with a schedule unless ?occurrences= says otherwise
MAX_RECENT = 100
HORIZON_S = 366 * 86_400  # how far ahead a one-time schedule may be


@dataclass(frozen=True)
class ScheduleBook:
    """The schedules store and the bounds the API keeps to."""

    store: SqlSchedules
    min_interval_s: float = 60.0
    max_per_tenant: int = 1000


def _book(request: Request) -> ScheduleBook:
    gateway: Gateway = request.app.state.gateway
    if gateway.schedules is None:
        raise BadRequest("this gateway keeps no schedules", 501)
    return gateway.schedules


def view(schedule: Schedule) -> dict[str, Any]:
    """A schedule as the API shows it."""
    return {
        "schedule_id": schedule.schedule_id,
        "tenant": schedule.tenant or None,
        "state": schedule.state,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "at": _iso(schedule.at),
        "next_fire_at": _iso(schedule.next_fire_at),
        "fired": schedule.fired,
        "job": schedule.template,
        "created_at": schedule.created_at.isoformat(),
        "updated_at": schedule.updated_at.isoformat(),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


async def create_schedule(request: Request) -> Response:
    book = _book(request)
    gateway: Gateway = request.app.state.gateway
    body = await read_json(request, gateway.limits.job_body_bytes)
    if not isinstance(body, dict):
        raise BadRequest("a schedule must be a JSON object")
    unknown_fields(body, (*JSON_FIELDS, *WHEN_FIELDS))
    now = utcnow()
    cron, at = _when(body, book, now)
    fields = json_fields({name: value for name, value in body.items() if name in JSON_FIELDS})
    fields["tenant"] = owner(request, fields.get("tenant"))
    job = job_request(fields)
    (stored,) = await gateway.blobs.stored([(job.content_uri, job.tenant)])
    if not stored:
        reason = f"{job.content_uri} is not in the blob store; upload it with POST /v1/blobs"
        raise BadRequest(reason, 422)
    tenant = job.tenant or ""
    count = await run_in_threadpool(book.store.count, tenant=tenant)
    if count >= book.max_per_tenant:
        raise BadRequest(f"a tenant keeps at most {book.max_per_tenant} schedules", 409)
    schedule = Schedule(
        schedule_id=new_id(),
        tenant=tenant,
        template=template_of(job),
        cron=cron.expression if cron else None,
        timezone=cron.timezone if cron else None,
        at=at,
        state=ACTIVE,
        next_fire_at=cron.next_after(now) if cron else at,
        fired=0,
        created_at=now,
        updated_at=now,
    )
    await run_in_threadpool(book.store.create, schedule)
    location = str(request.url_for("get_schedule", schedule_id=schedule.schedule_id).path)
    return JSONResponse(view(schedule), status_code=201, headers={"Location": location})


def _when(body: dict[str, Any], book: ScheduleBook, now: datetime) -> tuple[Cron | None, Any]:
    """The schedule's cron, or its one moment: exactly one of them, checked."""
    cron, at = body.get("cron"), body.get("at")
    if (cron is None) == (at is None):
        raise BadRequest("a schedule takes either cron (with an optional timezone) or at")
    try:
        if at is not None:
            if body.get("timezone") is not None:
                raise BadInput("timezone goes with cron; at carries its own offset")
            return None, parse_at(at, now=now, horizon_s=HORIZON_S)
        return parse_cron(
            cron, body.get("timezone"), min_interval_s=book.min_interval_s, now=now
        ), None
    except BadInput as exc:
        raise BadRequest(str(exc)) from exc


async def list_schedules(request: Request) -> Response:
    book = _book(request)
    params = request.query_params
    limit = page_limit(params)
    try:
        after = decode_cursor(params["cursor"]) if params.get("cursor") else None
    except BadCursor as exc:
        return problem(400, str(exc))
    page = functools.partial(
        book.store.page, tenant=tenant_of(request), limit=limit + 1, after=after
    )
    found = await run_in_threadpool(page)
    more = len(found) > limit
    found = found[:limit]
    cursor = encode_cursor(found[-1].created_at, found[-1].schedule_id) if more else None
    return JSONResponse({"schedules": [view(s) for s in found], "next_cursor": cursor})


async def _schedule(request: Request) -> Schedule | Response:
    """The schedule the path names, or the answer when the caller may not see one."""
    schedule_id = request.path_params["schedule_id"]
    if not JOB_ID_RE.fullmatch(schedule_id):
        return problem(400, "schedule id has characters a schedule id never has")
    schedule = await run_in_threadpool(_book(request).store.get, schedule_id)
    if schedule is None or not visible(request, {"tenant": schedule.tenant or None}):
        return problem(404, f"no schedule {schedule_id}")
    return schedule


async def get_schedule(request: Request) -> Response:
    schedule = await _schedule(request)
    if isinstance(schedule, Response):
        return schedule
    try:
        recent = int(request.query_params.get("occurrences", str(RECENT)))
    except ValueError:
        return problem(400, "occurrences must be an integer")
    if not 0 <= recent <= MAX_RECENT:
        return problem(400, f"occurrences must be between 0 and {MAX_RECENT}")
    occurrences = functools.partial(
        _book(request).store.occurrences, schedule.schedule_id, limit=recent
    )
    return JSONResponse(view(schedule) | {"occurrences": await run_in_threadpool(occurrences)})


async def pause_schedule(request: Request) -> Response:
    return await _move(request, into=PAUSED, from_states=(ACTIVE,))


async def resume_schedule(request: Request) -> Response:
    return await _move(request, into=ACTIVE, from_states=(PAUSED,))


async def delete_schedule(request: Request) -> Response:
    return await _move(request, into=DELETED, from_states=(ACTIVE, PAUSED, DONE))


async def _move(request: Request, *, into: str, from_states: tuple[str, ...]) -> Response:
    """Pause (no occurrence fires until resumed), resume (from the next occurrence after now:
    those that fell in the pause are not fired; a one-time schedule at its moment, or at once
    if that has passed) or delete a schedule."""
    schedule = await _schedule(request)
    if isinstance(schedule, Response):
        return schedule
    now = utcnow()
    next_fire_at = _resumed_at(schedule, now) if into == ACTIVE else None
    move = functools.partial(
        _book(request).store.move,
        schedule.schedule_id,
        into=into,
        from_states=from_states,
        next_fire_at=next_fire_at,
        now=now,
    )
    if not await run_in_threadpool(move):
        reason = f"schedule {schedule.schedule_id} is {schedule.state}, not {_any(from_states)}"
        return problem(409, reason)
    if into == DELETED:
        return JSONResponse({"schedule_id": schedule.schedule_id, "state": DELETED})
    moved = await run_in_threadpool(_book(request).store.get, schedule.schedule_id)
    return JSONResponse(view(moved) if moved else {"schedule_id": schedule.schedule_id})


def _resumed_at(schedule: Schedule, now: datetime) -> datetime | None:
    if schedule.cron is None:
        return schedule.at
    return Cron(schedule.cron, schedule.timezone or "UTC").next_after(now)


def _any(states: tuple[str, ...]) -> str:
    return " or ".join(states)
