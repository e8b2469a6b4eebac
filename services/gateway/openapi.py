"""The gateway's OpenAPI 3.1 document, served at /openapi.json (a test holds it to the routes)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from anchorline.callbacks import MAX_URL
from anchorline.events import JobKind, StageState
from anchorline.tenants import TENANT_RE
from anchorline_gateway.idempotency import MAX_KEY
from anchorline_gateway.reads import JOB_ID_RE
from anchorline_gateway.submission import MAX_MANIFEST_BYTES, PRIORITIES

Schema = dict[str, Any]

KINDS = [kind.value for kind in JobKind]
STATES = [state.value for state in StageState]
SHA256_URI = "^sha256:[0-9a-f]{64}$"
SIGNATURE = "^0x[0-9a-fA-F]{130}$"
TENANT: Schema = {"type": "string", "pattern": f"^{TENANT_RE.pattern}$"}
JOB_ID: Schema = {"type": "string", "pattern": f"^{JOB_ID_RE.pattern}$"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def answer(
    description: str, schema: Schema | None = None, media: str = "application/json"
) -> Schema:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {media: {"schema": schema}}}


def problems(*codes: int) -> dict[str, Schema]:
    reasons = {
        400: "malformed: the error says what is wrong",
        401: "no API key, or an unknown one",
        403: "the key may not do this (another tenant, or an operators' route)",
        404: "not found (or another tenant's)",
        409: "conflicts with the state of things: the error says which",
        413: "the body is larger than this route takes",
        415: "a content type this route does not take",
        422: "well formed, but refused: the error says why",
        501: "this gateway does not keep what the request needs",
        503: "Kafka, the database or the blob store did not answer; retry after Retry-After",
    }
    return {str(code): answer(reasons[code], ref("Problem")) for code in codes}


JOB_FIELDS: Schema = {
    "kind": {"type": "string", "enum": KINDS},
    "manifest": {
        "description": f"the signed manifest, a JSON object (at most {MAX_MANIFEST_BYTES} bytes)",
        "oneOf": [{"type": "string", "maxLength": MAX_MANIFEST_BYTES}, {"type": "object"}],
    },
    "signature": {"type": "string", "pattern": SIGNATURE},
    "signature_scheme": {"type": "string", "enum": ["eip191", "eip712"], "default": "eip191"},
    "tenant": TENANT,
    "callback_url": {
        "type": "string",
        "maxLength": MAX_URL,
        "pattern": "^https?://",
        "description": "where to POST the job record, signed (Standard Webhooks), once it ends",
    },
    "priority": {
        "type": "string",
        "enum": list(PRIORITIES),
        "description": "the order stages take the job in when behind (weights 6/3/1); "
        "none: the tenant's default (PRIORITY_DEFAULTS), else normal",
    },
}

SCHEMAS: dict[str, Schema] = {
    "Problem": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "JobJson": {
        "type": "object",
        "additionalProperties": False,
        "required": ["kind", "content_uri", "manifest", "signature"],
        "properties": {"content_uri": {"type": "string", "pattern": SHA256_URI}, **JOB_FIELDS},
    },
    "JobForm": {
        "type": "object",
        "additionalProperties": False,
        "required": ["kind", "content", "manifest", "signature"],
        "properties": {
            "content": {"type": "string", "format": "binary"},
            **JOB_FIELDS,
            "manifest": {"type": "string", "maxLength": MAX_MANIFEST_BYTES},
        },
    },
    "Batch": {
        "type": "object",
        "additionalProperties": False,
        "required": ["jobs"],
        "properties": {
            "jobs": {"type": "array", "minItems": 1, "maxItems": 500, "items": ref("JobJson")}
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["job_id", "kind", "state", "status_url"],
        "properties": {
            "job_id": {"type": "string"},
            "kind": {"type": "string", "enum": KINDS},
            "state": {"type": "string", "enum": STATES},
            "status_url": {"type": "string"},
        },
    },
    "Control": {
        "type": "object",
        "required": ["job_id", "state", "run", "status_url"],
        "properties": {
            "job_id": {"type": "string"},
            "state": {"type": "string", "enum": ["cancelled", "queued"]},
            "run": {"type": "integer", "description": "the generation: 0, then one more a retry"},
            "status_url": {"type": "string"},
        },
    },
    "BatchAccepted": {
        "type": "object",
        "required": ["jobs"],
        "properties": {"jobs": {"type": "array", "items": ref("Accepted")}},
    },
    "BatchRefused": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "jobs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "status": {"type": "integer"},
                        "error": {"type": "string"},
                    },
                },
            },
        },
    },
    "Blob": {
        "type": "object",
        "required": ["content_uri", "size"],
        "properties": {
            "content_uri": {"type": "string", "pattern": SHA256_URI},
            "size": {"type": "integer", "minimum": 0},
        },
    },
    "Job": {
        "type": "object",
        "description": "a job's record; README (the job record) names every field",
        "required": ["job_id", "kind", "state", "stage"],
        "properties": {
            "job_id": {"type": "string"},
            "kind": {"type": "string", "enum": KINDS},
            "state": {"type": "string", "enum": STATES},
            "stage": {"type": "string"},
            "progress": {"type": "integer"},
            "attempts": {"type": "integer"},
            "priority": {"type": "string", "enum": list(PRIORITIES)},
            "result": {"type": "object"},
            "error": {"type": ["string", "null"]},
            "trace_id": {
                "type": ["string", "null"],
                "description": "the W3C trace id of the job's first status (traceparent)",
            },
            "history": {"type": "array", "items": {"type": "object"}},
        },
    },
    "JobPage": {
        "type": "object",
        "required": ["jobs", "next_cursor"],
        "properties": {
            "jobs": {"type": "array", "items": ref("Job")},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "Stats": {
        "type": "object",
        "required": ["total", "by_state", "by_kind"],
        "properties": {
            "total": {"type": "integer"},
            "by_state": {"type": "object", "additionalProperties": {"type": "integer"}},
            "by_kind": {"type": "object"},
        },
    },
    "Receipt": {
        "type": "object",
        "description": "docs/receipts.md specifies every field",
        "required": ["format", "jobId", "kind", "content", "manifest", "proof", "anchor"],
    },
    "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
    "Replay": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "stage": {"enum": ["verify", "prove", "anchor", "status"]},
            "job": {"type": "string", "maxLength": 256},
            "error": {"type": "string", "maxLength": 256},
            "since": {"type": "string", "format": "date-time"},
            "until": {"type": "string", "format": "date-time"},
            "coordinates": {
                "type": "array",
                "maxItems": 1000,
                "items": {"type": "string", "maxLength": 512},
            },
            "dry_run": {"type": "boolean", "default": True},
        },
    },
}

OPEN: list[Schema] = []  # routes that need no key
STAGE_NAMES = ("verify", "prove", "anchor", "status")
SHORT_TEXT: Schema = {"type": "string", "maxLength": 256}
MOMENT: Schema = {"type": "string", "format": "date-time"}


def _param(name: str, where: str, schema: Schema, description: str, **extra: Any) -> Schema:
    return {"name": name, "in": where, "schema": schema, "description": description, **extra}


JOB_ID_PARAM = _param("job_id", "path", JOB_ID, "the job's id", required=True)

PATHS: dict[str, dict[str, Schema]] = {
    "/v1/blobs": {
        "post": {
            "summary": "Upload content; stored by its sha256 for the caller's tenant",
            "parameters": [_param("tenant", "query", TENANT, "open API only: whose blob it is")],
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            "responses": {
                "201": answer("stored", ref("Blob")),
                **problems(400, 401, 403, 413, 503),
            },
        }
    },
    "/v1/jobs": {
        "post": {
            "summary": "Submit a job: content in the form, or a sha256: URI of uploaded content",
            "parameters": [
                _param(
                    "Idempotency-Key",
                    "header",
                    {"type": "string", "minLength": 1, "maxLength": MAX_KEY, "pattern": "^[ -~]+$"},
                    "draft-ietf-httpapi-idempotency-key-header: one job per key and tenant",
                ),
                _param("Prefer", "header", {"type": "string"}, "wait=N: answer once the job ended"),
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {"schema": ref("JobForm")},
                    "application/json": {"schema": ref("JobJson")},
                },
            },
            "responses": {
                "200": answer("the job of an earlier request with this key, or the ended job"),
                "202": answer("accepted: Kafka has the request", ref("Accepted")),
                **problems(400, 401, 403, 409, 413, 415, 422, 501, 503),
            },
        },
        "get": {
            "summary": "List jobs, newest first",
            "parameters": [
                _param(
                    "state", "query", {"type": "string", "enum": STATES}, "only jobs in this state"
                ),
                _param(
                    "kind", "query", {"type": "string", "enum": KINDS}, "only jobs of this kind"
                ),
                _param(
                    "limit", "query", {"type": "integer", "minimum": 1, "maximum": 200}, "page size"
                ),
                _param("cursor", "query", {"type": "string"}, "next_cursor of the page before"),
                _param("tenant", "query", TENANT, "only this tenant's jobs (a key: its own)"),
                _param(
                    "since",
                    "query",
                    {"type": "string", "format": "date-time"},
                    "only jobs created at or after this time (ISO 8601; UTC unless zoned)",
                ),
                _param(
                    "until",
                    "query",
                    {"type": "string", "format": "date-time"},
                    "only jobs created before this time",
                ),
            ],
            "responses": {
                "200": answer("a page of jobs", ref("JobPage")),
                **problems(400, 401, 403, 503),
            },
        },
    },
    "/v1/jobs/batch": {
        "post": {
            "summary": "Submit many JSON job requests: all are accepted, or none",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("Batch")}},
            },
            "responses": {
                "202": answer("every job accepted", ref("BatchAccepted")),
                "400": answer(
                    "some job requests are invalid (each named by index)", ref("BatchRefused")
                ),
                **problems(401, 403, 413, 503),
            },
        }
    },
    "/v1/jobs/{job_id}": {
        "get": {
            "summary": "A job's record with its history",
            "parameters": [JOB_ID_PARAM],
            "responses": {"200": answer("the job", ref("Job")), **problems(400, 401, 404, 503)},
        }
    },
    "/v1/jobs/{job_id}/receipt": {
        "get": {
            "summary": "The receipt of a succeeded proof or anchor job",
            "parameters": [JOB_ID_PARAM],
            "responses": {
                "200": answer("the receipt", ref("Receipt")),
                **problems(400, 401, 404, 409, 503),
            },
        }
    },
    "/v1/jobs/{job_id}/cancel": {
        "post": {
            "summary": "Cancel a job that has not ended: it ends cancelled, no stage handles it",
            "parameters": [JOB_ID_PARAM],
            "responses": {
                "202": answer("cancelled", ref("Control")),
                **problems(400, 401, 404, 409, 503),
            },
        }
    },
    "/v1/jobs/{job_id}/retry": {
        "post": {
            "summary": "Run a failed, dead or cancelled job again, as its next run",
            "parameters": [JOB_ID_PARAM],
            "responses": {
                "202": answer("queued again", ref("Control")),
                **problems(400, 401, 404, 409, 503),
            },
        }
    },
    "/v1/stats": {
        "get": {
            "summary": "Counts of the caller's jobs by state and kind",
            "responses": {"200": answer("counts", ref("Stats")), **problems(401, 503)},
        }
    },
    "/v1/pipeline": {
        "get": {
            "summary": "Operators: each stage's lag, retries waiting and dead letters",
            "responses": {
                "200": answer("the pipeline", {"type": "object"}),
                **problems(401, 403, 404, 503),
            },
        }
    },
    "/v1/dead-letters": {
        "get": {
            "summary": "Operators: dead letters of every stage, filtered; each marked if replayed",
            "parameters": [
                _param("stage", "query", {"enum": [*STAGE_NAMES]}, "one stage's letters"),
                _param("job", "query", SHORT_TEXT, "only letters about this job"),
                _param("error", "query", SHORT_TEXT, "only letters whose error has this text"),
                _param("since", "query", MOMENT, "ISO 8601; letters at or after it"),
                _param("until", "query", MOMENT, "ISO 8601; letters at or before it"),
            ],
            "responses": {
                "200": answer("the letters (the latest 1000) and their total", {"type": "object"}),
                **problems(400, 401, 403, 404, 503),
            },
        }
    },
    "/v1/dead-letters/replay": {
        "post": {
            "summary": "Operators: replay the letters a filter or coordinates name; "
            "a dry run unless dry_run is false",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("Replay")}},
            },
            "responses": {
                "200": answer("what was (or would be) replayed", {"type": "object"}),
                **problems(400, 401, 403, 404, 413, 503),
            },
        }
    },
    "/v1/dead-letters/{coordinates}": {
        "get": {
            "summary": "Operators: one dead letter, its headers and its message decoded",
            "parameters": [
                _param(
                    "coordinates",
                    "path",
                    {"type": "string", "maxLength": 512},
                    "TOPIC:PARTITION:OFFSET",
                    required=True,
                )
            ],
            "responses": {
                "200": answer("the letter", {"type": "object"}),
                **problems(401, 403, 404, 503),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Operators: jobs by kind and state, Prometheus text format",
            "responses": {
                "200": answer("metrics", {"type": "string"}, "text/plain"),
                **problems(401, 403, 503),
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Alive",
            "security": OPEN,
            "responses": {"200": answer("alive", ref("Status"))},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Ready: the jobs table and Kafka answer",
            "security": OPEN,
            "responses": {
                "200": answer("ready", ref("Status")),
                "503": answer("not ready, with the problems", {"type": "object"}),
            },
        }
    },
    "/": {
        "get": {
            "summary": "The console page (jobs, stages, dead letters)",
            "security": OPEN,
            "responses": {"200": answer("the page", {"type": "string"}, "text/html")},
        }
    },
    "/.well-known/anchorline-trust.json": {
        "get": {
            "summary": "The installation's trust roots, to check receipts against",
            "security": OPEN,
            "responses": {
                "200": answer("the trust document (docs/receipts.md)", {"type": "object"}),
                **problems(404, 503),
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "security": OPEN,
            "responses": {"200": answer("OpenAPI 3.1", {"type": "object"})},
        }
    },
}

SCHEDULE_ID_PARAM = _param("schedule_id", "path", JOB_ID, "the schedule's id", required=True)
SCHEMAS["ScheduleRequest"] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "content_uri", "manifest", "signature"],
    "description": "a JSON job request (as POST /v1/jobs takes) and either cron or at",
    "properties": {
        "content_uri": {"type": "string", "pattern": SHA256_URI},
        **JOB_FIELDS,
        "cron": {
            "type": "string",
            "maxLength": 120,
            "description": "5 fields, or 6 with seconds first, or @hourly, @daily, …",
        },
        "timezone": {"type": "string", "maxLength": 64, "description": "IANA name; UTC"},
        "at": {**MOMENT, "description": "a one-time schedule: when it fires"},
    },
}
SCHEMAS["Schedule"] = {
    "type": "object",
    "required": ["schedule_id", "state", "next_fire_at", "fired", "job"],
    "properties": {
        "schedule_id": {"type": "string"},
        "tenant": {"type": ["string", "null"]},
        "state": {"type": "string", "enum": ["active", "paused", "done", "deleted"]},
        "cron": {"type": ["string", "null"]},
        "timezone": {"type": ["string", "null"]},
        "at": {"type": ["string", "null"]},
        "next_fire_at": {"type": ["string", "null"]},
        "fired": {"type": "integer"},
        "job": {"type": "object", "description": "the job request each occurrence submits"},
        "occurrences": {
            "type": "array",
            "description": "GET /v1/schedules/{id}: the latest, newest first, with their jobs",
            "items": {"type": "object"},
        },
    },
}
SCHEMAS["ScheduleList"] = {
    "type": "object",
    "required": ["schedules", "next_cursor"],
    "properties": {
        "schedules": {"type": "array", "items": ref("Schedule")},
        "next_cursor": {"type": ["string", "null"]},
    },
}
PATHS["/v1/schedules"] = {
    "post": {
        "summary": "Schedule a job: again and again by a cron expression, or once at a time",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ref("ScheduleRequest")}},
        },
        "responses": {
            "201": answer("scheduled", ref("Schedule")),
            **problems(400, 401, 403, 409, 413, 415, 422, 501, 503),
        },
    },
    "get": {
        "summary": "The caller's schedules, newest first",
        "parameters": [
            _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 200}, "page"),
            _param("cursor", "query", SHORT_TEXT, "next_cursor of the previous page"),
        ],
        "responses": {"200": answer("schedules", ref("ScheduleList")), **problems(400, 401, 503)},
    },
}
PATHS["/v1/schedules/{schedule_id}"] = {
    "get": {
        "summary": "A schedule and its latest occurrences, each with its job's state and result",
        "parameters": [
            SCHEDULE_ID_PARAM,
            _param(
                "occurrences",
                "query",
                {"type": "integer", "minimum": 0, "maximum": 100},
                "how many occurrences to show (20)",
            ),
        ],
        "responses": {
            "200": answer("the schedule", ref("Schedule")),
            **problems(400, 401, 404, 503),
        },
    },
    "delete": {
        "summary": "Delete a schedule: it fires no more",
        "parameters": [SCHEDULE_ID_PARAM],
        "responses": {"200": answer("deleted", {"type": "object"}), **problems(400, 401, 404, 503)},
    },
}
for _action, _summary in (
    ("pause", "Pause a schedule: nothing fires until it is resumed"),
    ("resume", "Resume a paused schedule from its next occurrence after now"),
):
    PATHS[f"/v1/schedules/{{schedule_id}}/{_action}"] = {
        "post": {
            "summary": _summary,
            "parameters": [SCHEDULE_ID_PARAM],
            "responses": {
                "200": answer("the schedule", ref("Schedule")),
                **problems(400, 401, 404, 409, 503),
            },
        }
    }

DOCUMENT: Schema = {
    "openapi": "3.1.0",
    "info": {
        "title": "anchorline gateway",
        "version": "1",
        "description": "Submit verify, proof and anchor jobs and read them back; see the README.",
    },
    "security": [{"bearer": []}, {"apiKey": []}],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        },
    },
}


async def openapi(request: Request) -> Response:
    return JSONResponse(DOCUMENT)
