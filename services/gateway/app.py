"""The HTTP API: accept jobs, publish them, read their records. It never does a stage's work."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from anchorline.events import JobKind, JobRef, JobRequested, Stage, StageState, new_id, utcnow
from anchorline.proof.manifest import SCHEMES, SIGNATURE_RE, parse_document
from anchorline.store.blobstore import SHA256_URI, FileBlobStore
from anchorline_gateway import ops
from anchorline_gateway.auth import ApiKeys, tenant_of, visible
from anchorline_gateway.pipeline import PipelineView
from anchorline_gateway.publisher import Publisher, Unavailable
from anchorline_gateway.reads import BadCursor, JobReader
from anchorline_gateway.receipts import get_receipt

MAX_MANIFEST_BYTES = 64 * 1024
MAX_IDEMPOTENCY_KEY = 255
MAX_WAIT_S = 60.0
MAX_BATCH = 500
WAIT_POLL_S = 0.1
FIRST_WAIT_POLL_S = 0.005
FINAL_STATES = frozenset({"succeeded", "failed", "dead"})
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c3c52-8d1e-4a8e-9a59-3c1f0f6b2a10")
MAX_LIST = 200
JOB_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Gateway:
    """What the routes need: built once by the composition root."""

    blobs: FileBlobStore
    publisher: Publisher
    reader: JobReader
    api_keys: Mapping[str, str] = field(default_factory=dict)
    pipeline: PipelineView | None = None


def problem(status: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": detail}, status_code=status, headers=headers or None)


class BadRequest(HTTPException):
    def __init__(self, detail: str, status_code: int = 400) -> None:
        super().__init__(status_code=status_code, detail=detail)


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def upload_blob(request: Request) -> Response:
    uri, size = await _gateway(request).blobs.put_stream(request.stream())
    return JSONResponse({"content_uri": uri, "size": size}, status_code=201)


async def submit_job(request: Request) -> Response:
    gateway = _gateway(request)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        fields = await _multipart_fields(request, gateway.blobs)
    elif content_type.startswith("application/json"):
        fields = await _json_fields(request, gateway.blobs)
    else:
        raise BadRequest("send multipart/form-data or application/json", 415)
    job = _bind_tenant(request, _job_request(fields))
    key = request.headers.get("idempotency-key")
    if key is not None:
        job = replace(job, job_id=idempotent_job_id(key, job.tenant))
        known = await run_in_threadpool(gateway.reader.get, job.job_id)
        if known is not None:
            return _accepted(request, job.job_id, known["kind"], known["state"], status_code=200)
    queued = JobRef(job.job_id, job.kind, job.submitted_at, job.tenant).status(
        Stage.VERIFY, StageState.QUEUED, attempt=1, progress=0
    )
    try:
        await gateway.publisher.publish([job, queued])
    except Unavailable as exc:
        return problem(503, str(exc), **{"Retry-After": str(RETRY_AFTER_S)})
    wait_s = _preferred_wait(request)
    if wait_s:
        finished = await _wait_terminal(gateway.reader, job.job_id, wait_s)
        if finished is not None:
            return JSONResponse(finished, headers={"Preference-Applied": f"wait={wait_s:g}"})
    return _accepted(request, job.job_id, job.kind, "queued", status_code=202)


def _bind_tenant(request: Request, job: JobRequested) -> JobRequested:
    """With API keys, a job belongs to the key's tenant, whatever the body says."""
    tenant = tenant_of(request)
    if tenant is None:
        return job
    if job.tenant not in (None, tenant):
        raise BadRequest(f"this API key submits for tenant {tenant!r} only", 403)
    return replace(job, tenant=tenant)


def _preferred_wait(request: Request) -> float:
    """Seconds from `Prefer: wait=N` (RFC 7240), capped; 0 when absent or malformed."""
    for preference in request.headers.get("prefer", "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return min(max(float(value), 0.0), MAX_WAIT_S)
            except ValueError:
                return 0.0
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


def idempotent_job_id(key: str, tenant: str | None) -> str:
    """The same key (per tenant) always names the same job, so a client's retry finds it."""
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{tenant or ''}\n{key}"))


def _accepted(
    request: Request, job_id: str, kind: str, state: str, *, status_code: int
) -> Response:
    status_url = str(request.url_for("get_job", job_id=job_id).path)
    body = {"job_id": job_id, "kind": kind, "state": state, "status_url": status_url}
    return JSONResponse(body, status_code=status_code, headers={"Location": status_url})


async def _multipart_fields(request: Request, blobs: FileBlobStore) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    # The content and, optionally, the manifest may come as files; closing the form on the way
    # out releases their spooled temporary files.
    async with request.form(max_files=2, max_fields=16, max_part_size=MAX_MANIFEST_BYTES) as form:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name == "content":
                    fields["content_uri"], _ = await run_in_threadpool(blobs.put_file, value.file)
                elif name == "manifest":
                    fields["manifest"] = (await value.read(MAX_MANIFEST_BYTES + 1)).decode(
                        "utf-8", "replace"
                    )
                else:
                    raise BadRequest(f"unexpected file field {name!r}")
            else:
                fields[name] = value
    if "content_uri" not in fields:
        raise BadRequest("multipart body lacks the 'content' file")
    return fields


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc


async def _json_fields(request: Request, blobs: FileBlobStore) -> dict[str, Any]:
    return _stored_content_fields(await _json_body(request), blobs)


def _stored_content_fields(body: Any, blobs: FileBlobStore) -> dict[str, Any]:
    """The fields of a JSON job request, whose content was uploaded to /v1/blobs before."""
    if not isinstance(body, dict):
        raise BadRequest("a job request must be a JSON object")
    uri = body.get("content_uri")
    if not isinstance(uri, str) or not SHA256_URI.match(uri):
        raise BadRequest(
            "content_uri must be sha256:<64 lowercase hex> of content uploaded to /v1/blobs"
        )
    if not blobs.path_of(uri.removeprefix("sha256:")).exists():
        raise BadRequest(f"{uri} is not in the blob store; upload it with POST /v1/blobs", 422)
    if isinstance(body.get("manifest"), dict):
        body = {**body, "manifest": json.dumps(body["manifest"])}
    return body


async def submit_batch(request: Request) -> Response:
    """Many JSON job requests at once: all are accepted, or none (400 naming each bad one)."""
    gateway = _gateway(request)
    body = await _json_body(request)
    items = body.get("jobs") if isinstance(body, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise BadRequest(f'send {{"jobs": [...]}} with 1 to {MAX_BATCH} job requests')
    jobs: list[JobRequested] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            fields = _stored_content_fields(item, gateway.blobs)
            jobs.append(_bind_tenant(request, _job_request(fields)))
        except HTTPException as exc:
            errors.append({"index": index, "status": exc.status_code, "error": exc.detail})
    if errors:
        return JSONResponse({"error": "some job requests are invalid", "jobs": errors}, 400)
    events: list[Any] = []
    for job in jobs:
        ref = JobRef(job.job_id, job.kind, job.submitted_at, job.tenant)
        events += [job, ref.status(Stage.VERIFY, StageState.QUEUED, attempt=1, progress=0)]
    try:
        await gateway.publisher.publish(events)
    except Unavailable as exc:
        return problem(503, str(exc), **{"Retry-After": str(RETRY_AFTER_S)})
    accepted = [
        {
            "job_id": job.job_id,
            "kind": job.kind,
            "state": "queued",
            "status_url": str(request.url_for("get_job", job_id=job.job_id).path),
        }
        for job in jobs
    ]
    return JSONResponse({"jobs": accepted}, status_code=202)


def _job_request(fields: dict[str, Any]) -> JobRequested:
    kind = fields.get("kind")
    if kind not in {k.value for k in JobKind}:
        raise BadRequest("kind must be one of verify, proof, anchor")
    manifest = fields.get("manifest")
    if not isinstance(manifest, str) or not manifest:
        raise BadRequest("manifest is required (a JSON object)")
    if len(manifest.encode()) > MAX_MANIFEST_BYTES:
        raise BadRequest(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes", 413)
    try:
        parse_document(manifest)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    signature = fields.get("signature")
    if not isinstance(signature, str) or not SIGNATURE_RE.match(signature):
        raise BadRequest("signature must be 0x followed by 130 hex digits", 422)
    tenant = fields.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise BadRequest("tenant must be a string")
    scheme = fields.get("signature_scheme") or "eip191"
    if scheme not in SCHEMES:
        raise BadRequest(f"signature_scheme must be one of {', '.join(SCHEMES)}", 422)
    return JobRequested(
        job_id=new_id(),
        kind=JobKind(kind),
        content_uri=fields["content_uri"],
        manifest=manifest,
        signature=signature,
        signature_scheme=scheme,
        submitted_at=utcnow(),
        tenant=tenant,
    )


async def get_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    if not JOB_ID_RE.match(job_id):
        return problem(400, "job id has characters a job id never has")
    reader = _gateway(request).reader
    job = await run_in_threadpool(reader.get, job_id)
    if job is None or not visible(request, job):
        return problem(404, f"no job {job_id} (a job just accepted appears within moments)")
    job["history"] = await run_in_threadpool(reader.history, job_id)
    return JSONResponse(job)


async def list_jobs(request: Request) -> Response:
    params = request.query_params
    state, kind = params.get("state"), params.get("kind")
    if state and state not in {s.value for s in StageState}:
        return problem(400, f"state must be one of {', '.join(s.value for s in StageState)}")
    if kind and kind not in {k.value for k in JobKind}:
        return problem(400, "kind must be one of verify, proof, anchor")
    try:
        limit = int(params.get("limit", "50"))
    except ValueError:
        return problem(400, "limit must be an integer")
    if not 1 <= limit <= MAX_LIST:
        return problem(400, f"limit must be between 1 and {MAX_LIST}")
    reader = _gateway(request).reader
    try:
        page, cursor = await run_in_threadpool(
            lambda: reader.list(
                state=state,
                kind=kind,
                limit=limit,
                cursor=params.get("cursor"),
                tenant=tenant_of(request),
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


def create_app(gateway: Gateway) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.gateway = gateway
        yield
        gateway.publisher.close()

    routes = [
        Route("/v1/blobs", upload_blob, methods=["POST"]),
        Route("/v1/jobs", submit_job, methods=["POST"]),
        Route("/v1/jobs/batch", submit_batch, methods=["POST"]),
        Route("/v1/jobs", list_jobs, methods=["GET"]),
        Route("/v1/jobs/{job_id}", get_job, methods=["GET"], name="get_job"),
        Route("/v1/jobs/{job_id}/receipt", get_receipt, methods=["GET"], name="get_receipt"),
        Route("/v1/stats", stats, methods=["GET"]),
        Route("/healthz", ops.health, methods=["GET"]),
        Route("/readyz", ops.ready, methods=["GET"]),
        Route("/metrics", ops.metrics, methods=["GET"]),
        Route("/v1/pipeline", ops.pipeline, methods=["GET"]),
        Route("/", ops.dashboard, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
        middleware=[Middleware(ApiKeys, keys=gateway.api_keys)],
    )
