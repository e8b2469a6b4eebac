"""Cancel and retry a job through the API. The gateway only asks: the stages skip a cancelled
job, the projector records what happened, and a retry is a new run of the job's own request."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from anchorline.errors import Poison
from anchorline.events import (
    MAX_GENERATION,
    JobKind,
    JobRef,
    JobRequested,
    Stage,
    StageState,
    utcnow,
)
from anchorline.stream import codec
from anchorline.stream.cancellations import cancel_record
from anchorline_gateway.auth import visible
from anchorline_gateway.idempotency import Claim
from anchorline_gateway.locations import jobs_path
from anchorline_gateway.problems import problem
from anchorline_gateway.publisher import Unavailable
from anchorline_gateway.reads import JOB_ID_RE, JobRun
from anchorline_gateway.traced import traceparent

if TYPE_CHECKING:
    from anchorline_gateway.app import Gateway

FINAL = frozenset({"succeeded", "failed", "dead", "cancelled"})
RETRYABLE = frozenset({"failed", "dead", "cancelled"})
RETRY_AFTER_S = 5


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _run(request: Request) -> JobRun | Response:
    """The job's current run, or the answer when there is none the caller may see."""
    job_id = request.path_params["job_id"]
    if not JOB_ID_RE.fullmatch(job_id):
        return problem(400, "job id has characters a job id never has")
    run = await run_in_threadpool(_gateway(request).reader.run_of, job_id)
    # Another tenant's job gets the same answer as no job at all.
    if run is None or not visible(request, {"tenant": run.tenant}):
        return problem(404, f"no job {job_id} (a job just accepted appears within moments)")
    return run


def _ref(run: JobRun, *, generation: int) -> JobRef:
    return JobRef(run.job_id, JobKind(run.kind), run.submitted_at, run.tenant, None, generation)


def _answer(request: Request, run: JobRun, state: str, generation: int) -> Response:
    status_url = jobs_path(request) + run.job_id
    body = {"job_id": run.job_id, "state": state, "run": generation, "status_url": status_url}
    return JSONResponse(body, status_code=202, headers={"Location": status_url})


async def cancel_job(request: Request) -> Response:
    """Cancel the job's current run: `cancelled` at once in its record, and a record every
    stage reads so that none handles the job after it has seen it."""
    run = await _run(request)
    if isinstance(run, Response):
        return run
    if run.state in FINAL:
        return problem(409, f"job {run.job_id} has already ended ({run.state}): nothing to cancel")
    gateway = _gateway(request)
    now = utcnow()
    status = _ref(run, generation=run.generation).status(
        Stage(run.stage),
        StageState.CANCELLED,
        attempt=run.attempts,
        occurred_at=now,
        note="cancelled through the API",
    )
    key, value = cancel_record(run.job_id, generation=run.generation, at=now)
    try:
        await gateway.publisher.publish(
            [status],
            generation=run.generation,
            records=[(gateway.topics.cancellations, key, value)],
            traceparent=traceparent(request),
        )
    except Unavailable as exc:
        return problem(503, str(exc), **{"Retry-After": str(RETRY_AFTER_S)})
    return _answer(request, run, "cancelled", run.generation)


async def retry_job(request: Request) -> Response:
    """Run a failed, dead or cancelled job again from its first stage, as its next run (a
    generation, as a dead-letter replay makes one), with a `queued` event saying so."""
    run = await _run(request)
    if isinstance(run, Response):
        return run
    if run.state not in RETRYABLE:
        reason = f"job {run.job_id} is {run.state}: only a failed, dead or cancelled job is retried"
        return problem(409, reason)
    if run.generation >= MAX_GENERATION:
        return problem(409, f"job {run.job_id} has run {MAX_GENERATION} times")
    job = await _request(_gateway(request), run)
    if job is None:
        reason = f"job {run.job_id}'s request was not kept: replay it with `anchorline dlq`"
        return problem(409, reason)
    generation = run.generation + 1
    claimed = await _claim(_gateway(request), job, generation)
    if not claimed:
        return problem(409, f"job {run.job_id} is already being retried as run {generation}")
    queued = _ref(run, generation=generation).status(
        Stage.VERIFY,
        StageState.QUEUED,
        attempt=1,
        progress=0,
        note=f"retried through the API as run {generation}",
    )
    try:
        await _gateway(request).publisher.publish(
            [job, queued], generation=generation, traceparent=traceparent(request)
        )
    except Unavailable as exc:
        await _settle(_gateway(request), job, generation, done=False)
        return problem(503, str(exc), **{"Retry-After": str(RETRY_AFTER_S)})
    await _settle(_gateway(request), job, generation, done=True)
    return _answer(request, run, "queued", generation)


async def _request(gateway: Gateway, run: JobRun) -> JobRequested | None:
    """The job's request as published, if the projector kept it and it is this job's."""
    raw = await run_in_threadpool(gateway.reader.request_of, run.job_id)
    try:
        job = codec.decode(raw, JobRequested) if raw is not None else None
    except Poison:
        return None
    if job is None or job.job_id != run.job_id or job.tenant != run.tenant:
        return None
    return job


def _retry_key(job: JobRequested, generation: int) -> str:
    return f"anchorline-retry:{job.job_id}:{generation}"


async def _claim(gateway: Gateway, job: JobRequested, generation: int) -> bool:
    """Whether this request is the one that starts run `generation` (two at once start one)."""
    if gateway.idempotency is None:
        return True
    claim = functools.partial(
        gateway.idempotency.claim, job, key=_retry_key(job, generation), fingerprint="retry"
    )
    claimed = await run_in_threadpool(claim)
    return claimed.claim is Claim.NEW


async def _settle(gateway: Gateway, job: JobRequested, generation: int, *, done: bool) -> None:
    if gateway.idempotency is None:
        return
    keys = gateway.idempotency
    settle = keys.complete if done else keys.release
    await run_in_threadpool(functools.partial(settle, job, key=_retry_key(job, generation)))
