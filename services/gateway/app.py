"""The HTTP API: accept jobs, publish them, read their records. It never does a stage's work."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from anchorline.errors import Retryable
from anchorline.events import JobKind, JobRequested, Priority, StageState, submission
from anchorline.proof.trust import WELL_KNOWN_PATH
from anchorline.store.blobstore import BlobStore
from anchorline.stream.topics import Topics
from anchorline.stream.tracing import IDS_ONLY, Tracer
from anchorline_gateway import letters, ops
from anchorline_gateway.auth import ApiKeys, owner, tenant_of, visible
from anchorline_gateway.control import cancel_job, retry_job
from anchorline_gateway.idempotency import (
    Claim,
    Claimed,
    IdempotencyKeys,
    fingerprint,
    key_of,
)
from anchorline_gateway.letters import DeadLetterDesk, moment
from anchorline_gateway.limits import Limits, capped, read_json
from anchorline_gateway.locations import jobs_path
from anchorline_gateway.openapi import openapi
from anchorline_gateway.pipeline import PipelineView
from anchorline_gateway.problems import BadRequest, problem
from anchorline_gateway.publisher import Publisher, Unavailable
from anchorline_gateway.reads import JOB_ID_RE, BadCursor, JobReader, page_limit
from anchorline_gateway.receipts import get_receipt
from anchorline_gateway.schedules import (
    ScheduleBook,
    create_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
)
from anchorline_gateway.submission import (
    FORM_FIELDS,
    FORM_FILES,
    MAX_MANIFEST_BYTES,
    job_request,
    json_fields,
    unknown_fields,
)
from anchorline_gateway.traced import TraceRequests, traceparent
from anchorline_gateway.trust import get_trust

MAX_WAIT_S = 60.0
MAX_BATCH = 500
WAIT_POLL_S = 0.1
FIRST_WAIT_POLL_S = 0.005
FINAL_STATES = frozenset({"succeeded", "failed", "dead", "cancelled"})
RETRY_AFTER_S = 5

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gateway:
    """What the routes need: built once by the composition root."""

    blobs: BlobStore
    publisher: Publisher
    reader: JobReader
    api_keys: Mapping[str, str] = field(default_factory=dict)
    admin_keys: frozenset[str] = frozenset()
    pipeline: PipelineView | None = None
    dead_letters: DeadLetterDesk | None = None
    idempotency: IdempotencyKeys | None = None
    limits: Limits = field(default_factory=Limits)
    trust_file: Path | None = None
    topics: Topics = field(default_factory=Topics)
    priority_defaults: Mapping[str, Priority] = field(default_factory=dict)  # tenant (or *) →
    schedules: ScheduleBook | None = None
    tracer: Tracer = IDS_ONLY

    def default_priority(self, tenant: str | None) -> Priority:
        """The priority of a job of `tenant` that names none (PRIORITY_DEFAULTS)."""
        defaults = self.priority_defaults
        return defaults.get(tenant or "*", defaults.get("*", Priority.NORMAL))


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def upload_blob(request: Request) -> Response:
    gateway = _gateway(request)
    tenant = owner(request, request.query_params.get("tenant"))
    body = capped(request, gateway.limits.blob_bytes).stream()
    uri, size = await gateway.blobs.put_stream(body, tenant=tenant)
    return JSONResponse({"content_uri": uri, "size": size}, status_code=201)


async def submit_job(request: Request) -> Response:
    gateway = _gateway(request)
    key = key_of(request)
    if key is not None and gateway.idempotency is None:
        raise BadRequest("this gateway keeps no Idempotency-Key records", 501)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        job = await _multipart_job(capped(request, gateway.limits.multipart_bytes), gateway)
    elif content_type.startswith("application/json"):
        body = await read_json(request, gateway.limits.job_body_bytes)
        job = _json_job(request, body)
        if await _not_uploaded([job], gateway.blobs):
            raise BadRequest(_not_stored(job), 422)
    else:
        raise BadRequest("send multipart/form-data or application/json", 415)
    claim = None
    if key is not None and gateway.idempotency is not None:
        claim = (gateway.idempotency, key)
        claimed = await run_in_threadpool(
            functools.partial(gateway.idempotency.claim, job, key=key, fingerprint=fingerprint(job))
        )
        if claimed.claim is not Claim.NEW:
            return _not_first(request, claimed)
        job = replace(job, job_id=claimed.job_id)
    refused = await _publish(gateway.publisher, job, claim=claim, traceparent=traceparent(request))
    if refused is not None:
        return refused
    wait_s = _preferred_wait(request)
    if wait_s:
        finished = await _wait_terminal(gateway.reader, job.job_id, wait_s)
        if finished is not None:
            return JSONResponse(finished, headers={"Preference-Applied": f"wait={wait_s:g}"})
    return _accepted(request, job.job_id, job.kind, "queued", status_code=202)


def _not_first(request: Request, claimed: Claimed) -> Response:
    """The answer to a request whose Idempotency-Key an earlier request took."""
    if claimed.claim is Claim.MISMATCH:
        raise BadRequest("this Idempotency-Key was used for another request", 422)
    if claimed.claim is Claim.IN_FLIGHT:
        reason = "a request with this Idempotency-Key is still being processed; retry later"
        return problem(409, reason, **{"Retry-After": "1"})
    return _accepted(request, claimed.job_id, claimed.kind, "queued", status_code=200)


async def _publish(
    publisher: Publisher,
    job: JobRequested,
    *,
    claim: tuple[IdempotencyKeys, str] | None,
    traceparent: str | None,
) -> Response | None:
    """Publish the job and its first status; a 503 when Kafka did not take them.

    Under an Idempotency-Key (`claim`), the key is settled once Kafka has the job, and released
    when it did not, so that the client's retry may claim it again.
    """
    try:
        await publisher.publish(submission(job), traceparent=traceparent)
    except BaseException as exc:
        if claim is not None:
            await run_in_threadpool(functools.partial(claim[0].release, job, key=claim[1]))
        if isinstance(exc, Unavailable):
            return problem(503, str(exc), **{"Retry-After": str(RETRY_AFTER_S)})
        raise
    if claim is not None:
        await run_in_threadpool(functools.partial(claim[0].complete, job, key=claim[1]))
    return None


def _preferred_wait(request: Request) -> float:
    """Seconds from `Prefer: wait=N` (RFC 7240), capped; 0 when absent or malformed."""
    for preference in request.headers.get("prefer", "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                seconds = float(value)
            except ValueError:
                return 0.0
            return min(max(seconds, 0.0), MAX_WAIT_S) if math.isfinite(seconds) else 0.0
    return 0.0


async def _wait_terminal(reader: JobReader, job_id: str, wait_s: float) -> dict[str, Any] | None:
    """The job's record once it is final, or None when `wait_s` passes first."""
    deadline = asyncio.get_running_loop().time() + wait_s
    pause = FIRST_WAIT_POLL_S
    while asyncio.get_running_loop().time() < deadline:
        job = await run_in_threadpool(reader.get, job_id)
        if job is not None and job["state"] in FINAL_STATES:
            return job
        await asyncio.sleep(pause)
        # Often at first: most jobs finish in tens of ms, and a flat 0.1 s added 50 on average.
        pause = min(pause * 2, WAIT_POLL_S)
    return None


def _accepted(
    request: Request, job_id: str, kind: str, state: str, *, status_code: int
) -> Response:
    status_url = jobs_path(request) + job_id
    body = {"job_id": job_id, "kind": kind, "state": state, "status_url": status_url}
    return JSONResponse(body, status_code=status_code, headers={"Location": status_url})


async def _multipart_job(request: Request, gateway: Gateway) -> JobRequested:
    """A multipart job request, its content stored in the blob store once the rest is checked."""
    # Closing the form on the way out releases the spooled temporary files of its file parts.
    async with request.form(max_files=2, max_fields=8, max_part_size=MAX_MANIFEST_BYTES) as form:
        parts = _known_parts(form.multi_items())
        fields: dict[str, Any] = {n: v for n, v in parts.items() if isinstance(v, str)}
        manifest = parts.get("manifest")
        if isinstance(manifest, UploadFile):
            raw = await manifest.read(MAX_MANIFEST_BYTES + 1)
            fields["manifest"] = raw.decode("utf-8", "replace")
        content = parts.get("content")
        if not isinstance(content, UploadFile):
            raise BadRequest("multipart body lacks the 'content' file")
        fields["tenant"] = owner(request, fields.get("tenant"))
        default = gateway.default_priority(fields["tenant"])
        job = job_request({**fields, "content_uri": ""}, default_priority=default)
        store = functools.partial(gateway.blobs.put_file, content.file, tenant=job.tenant)
        uri, _ = await run_in_threadpool(store)
    return replace(job, content_uri=uri)


def _known_parts(items: list[tuple[str, UploadFile | str]]) -> dict[str, UploadFile | str]:
    """Each part by name, or BadRequest for an unknown, repeated or misplaced one."""
    unknown_fields([name for name, _ in items], (*FORM_FIELDS, "content"))
    parts: dict[str, UploadFile | str] = {}
    for name, value in items:
        if name in parts:
            raise BadRequest(f"field {name!r} is given more than once")
        if isinstance(value, UploadFile) and name not in FORM_FILES:
            raise BadRequest(f"field {name!r} must be a plain field, not a file")
        if isinstance(value, str) and name not in FORM_FIELDS:
            raise BadRequest(f"field {name!r} must be a file")
        parts[name] = value
    return parts


def _json_job(request: Request, body: Any) -> JobRequested:
    """A JSON job request, its fields checked (its content is looked for apart)."""
    fields = json_fields(body)
    fields["tenant"] = owner(request, fields.get("tenant"))
    default = _gateway(request).default_priority(fields["tenant"])
    return job_request(fields, default_priority=default)


async def _not_uploaded(jobs: list[JobRequested], blobs: BlobStore) -> list[int]:
    """The indexes of the jobs whose content their tenant has not uploaded to /v1/blobs: the
    same whether another tenant has it or nobody does."""
    stored = await blobs.stored([(job.content_uri, job.tenant) for job in jobs])
    return [index for index, found in enumerate(stored) if not found]


def _not_stored(job: JobRequested) -> str:
    return f"{job.content_uri} is not in the blob store; upload it with POST /v1/blobs"


async def submit_batch(request: Request) -> Response:
    """Many JSON job requests at once: all are accepted, or none (400 naming each bad one)."""
    gateway = _gateway(request)
    if "idempotency-key" in request.headers:
        raise BadRequest("Idempotency-Key is taken by POST /v1/jobs only; send jobs one by one")
    body = await read_json(request, gateway.limits.batch_body_bytes)
    if isinstance(body, dict):
        unknown_fields(body, ("jobs",))
    items = body.get("jobs") if isinstance(body, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise BadRequest(f'send {{"jobs": [...]}} with 1 to {MAX_BATCH} job requests')
    jobs: dict[int, JobRequested] = {}
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            jobs[index] = _json_job(request, item)
        except HTTPException as exc:
            errors.append({"index": index, "status": exc.status_code, "error": exc.detail})
    # Every field is checked before the blob store is asked, in one call for the whole batch.
    indexes = list(jobs)
    for missing in await _not_uploaded(list(jobs.values()), gateway.blobs):
        job = jobs[indexes[missing]]
        errors.append({"index": indexes[missing], "status": 422, "error": _not_stored(job)})
    if errors:
        errors.sort(key=lambda error: int(error["index"]))
        return JSONResponse({"error": "some job requests are invalid", "jobs": errors}, 400)
    events: list[Any] = []
    for job in jobs.values():
        events += submission(job)
    try:
        await gateway.publisher.publish(events, traceparent=traceparent(request))
    except Unavailable as exc:
        return problem(503, str(exc), **{"Retry-After": str(RETRY_AFTER_S)})
    prefix = jobs_path(request)
    accepted = [
        {
            "job_id": job.job_id,
            "kind": job.kind,
            "state": "queued",
            "status_url": prefix + job.job_id,
        }
        for job in jobs.values()
    ]
    return JSONResponse({"jobs": accepted}, status_code=202)


async def get_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    if not JOB_ID_RE.fullmatch(job_id):
        return problem(400, "job id has characters a job id never has")
    reader = _gateway(request).reader
    job = await run_in_threadpool(reader.get, job_id)
    if job is None or not visible(request, job):
        return problem(404, f"no job {job_id} (a job just accepted appears within moments)")
    job["history"] = await run_in_threadpool(reader.history, job_id)
    schedules = _gateway(request).schedules
    job["schedule_id"] = (
        await run_in_threadpool(schedules.store.schedule_of, job_id) if schedules else None
    )
    return JSONResponse(job)


async def list_jobs(request: Request) -> Response:
    params = request.query_params
    state, kind = params.get("state"), params.get("kind")
    if state and state not in {s.value for s in StageState}:
        return problem(400, f"state must be one of {', '.join(s.value for s in StageState)}")
    if kind and kind not in {k.value for k in JobKind}:
        return problem(400, "kind must be one of verify, proof, anchor")
    limit = page_limit(params)
    reader = _gateway(request).reader
    tenant = owner(request, params.get("tenant"))  # a tenant's key: its own tenant, only
    since, until = moment(params.get("since"), "since"), moment(params.get("until"), "until")
    try:
        page, cursor = await run_in_threadpool(
            lambda: reader.list(
                state=state,
                kind=kind,
                limit=limit,
                cursor=params.get("cursor"),
                tenant=tenant,
                since=since,
                until=until,
            )
        )
    except BadCursor as exc:
        return problem(400, str(exc))
    return JSONResponse({"jobs": page, "next_cursor": cursor})


async def stats(request: Request) -> Response:
    reader = _gateway(request).reader
    return JSONResponse(await run_in_threadpool(lambda: reader.stats(tenant=tenant_of(request))))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, exc.detail)


async def database_error(request: Request, exc: Exception) -> Response:
    """The jobs database did not answer (down, or not migrated yet): a retry may succeed."""
    log.warning("jobs database: %s", exc)
    reason = f"the jobs database did not answer ({type(exc).__name__})"
    return problem(503, reason, **{"Retry-After": str(RETRY_AFTER_S)})


async def transient_error(request: Request, exc: Exception) -> Response:
    """Something the gateway needs (the blob store) did not answer: a retry may succeed."""
    log.warning("transient: %s", exc)
    return problem(503, str(exc), **{"Retry-After": str(RETRY_AFTER_S)})


def create_app(gateway: Gateway) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.gateway = gateway
        yield
        gateway.publisher.close()
        gateway.tracer.close()
        if gateway.pipeline is not None:
            gateway.pipeline.close()

    routes = [
        Route("/v1/blobs", upload_blob, methods=["POST"]),
        Route("/v1/jobs", submit_job, methods=["POST"]),
        Route("/v1/jobs/batch", submit_batch, methods=["POST"]),
        Route("/v1/jobs", list_jobs, methods=["GET"]),
        Route("/v1/jobs/{job_id}", get_job, methods=["GET"], name="get_job"),
        Route("/v1/jobs/{job_id}/receipt", get_receipt, methods=["GET"], name="get_receipt"),
        Route("/v1/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
        Route("/v1/jobs/{job_id}/retry", retry_job, methods=["POST"]),
        Route("/v1/schedules", create_schedule, methods=["POST"]),
        Route("/v1/schedules", list_schedules, methods=["GET"]),
        Route("/v1/schedules/{schedule_id}", get_schedule, methods=["GET"], name="get_schedule"),
        Route("/v1/schedules/{schedule_id}", delete_schedule, methods=["DELETE"]),
        Route("/v1/schedules/{schedule_id}/pause", pause_schedule, methods=["POST"]),
        Route("/v1/schedules/{schedule_id}/resume", resume_schedule, methods=["POST"]),
        Route("/v1/stats", stats, methods=["GET"]),
        Route("/healthz", ops.health, methods=["GET"]),
        Route("/readyz", ops.ready, methods=["GET"]),
        Route("/metrics", ops.metrics, methods=["GET"]),
        Route("/v1/pipeline", ops.pipeline, methods=["GET"]),
        Route("/v1/dead-letters", letters.list_letters, methods=["GET"]),
        Route("/v1/dead-letters/replay", letters.replay_letters, methods=["POST"]),
        Route("/v1/dead-letters/{coordinates}", letters.show_letter, methods=["GET"]),
        Route("/", ops.dashboard, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route(WELL_KNOWN_PATH, get_trust, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: http_error,
            SQLAlchemyError: database_error,
            Retryable: transient_error,
        },
        middleware=[
            Middleware(TraceRequests, tracer=gateway.tracer),
            Middleware(ApiKeys, keys=gateway.api_keys, admin_keys=gateway.admin_keys),
        ],
    )
    app.state.jobs_paths = {}
    return app
