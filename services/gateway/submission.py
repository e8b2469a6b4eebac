"""What a job request may say, field by field: a type, a bound and a reason for every refusal."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from anchorline.callbacks import check_url
from anchorline.errors import BadInput
from anchorline.events import JobKind, JobRequested, Priority, new_id, utcnow
from anchorline.proof.manifest import MAX_BYTES as MAX_MANIFEST_BYTES
from anchorline.proof.manifest import SCHEMES, SIGNATURE_RE, parse_document
from anchorline.store.blobstore import SHA256_URI
from anchorline.tenants import check_tenant
from anchorline_gateway.problems import BadRequest, quoted

KINDS = tuple(kind.value for kind in JobKind)
# What each kind of request may carry; anything else is refused by name, so that a field this
# gateway does not know (a `content_uri` pointing at a server file, say) is never passed on.
FORM_FIELDS = (
    "kind",
    "manifest",
    "signature",
    "signature_scheme",
    "tenant",
    "callback_url",
    "priority",
)
FORM_FILES = ("content", "manifest")
JSON_FIELDS = (
    "kind",
    "content_uri",
    "manifest",
    "signature",
    "signature_scheme",
    "tenant",
    "callback_url",
    "priority",
)
PRIORITIES = tuple(priority.value for priority in Priority)


def unknown_fields(names: Any, known: tuple[str, ...]) -> None:
    """BadRequest naming the first of `names` that is not in `known`."""
    for name in names:
        if name not in known:
            raise BadRequest(f"unknown field {quoted(name)}: this request takes {', '.join(known)}")


def json_fields(body: Any) -> dict[str, Any]:
    """The fields of a JSON job request, the manifest as text."""
    if not isinstance(body, dict):
        raise BadRequest("a job request must be a JSON object")
    unknown_fields(body, JSON_FIELDS)
    uri = body.get("content_uri")
    if not isinstance(uri, str) or not SHA256_URI.fullmatch(uri):
        raise BadRequest(
            "content_uri must be sha256:<64 lowercase hex> of content uploaded to /v1/blobs"
        )
    if isinstance(body.get("manifest"), dict):
        body = {**body, "manifest": json.dumps(body["manifest"], ensure_ascii=False)}
    return body


def job_request(
    fields: Mapping[str, Any], *, default_priority: Priority = Priority.NORMAL
) -> JobRequested:
    """A JobRequested from checked fields (the content already stored), or BadRequest why not;
    a job that names no priority gets `default_priority` (its tenant's)."""
    return JobRequested(
        job_id=new_id(),
        kind=JobKind(_kind(fields.get("kind"))),
        content_uri=fields["content_uri"],
        manifest=_manifest(fields.get("manifest")),
        signature=_signature(fields.get("signature")),
        signature_scheme=_scheme(fields.get("signature_scheme")),
        submitted_at=utcnow(),
        tenant=_tenant(fields.get("tenant")),
        callback_url=_callback(fields.get("callback_url")),
        priority=_priority(fields.get("priority"), default_priority),
    )


def _kind(value: Any) -> str:
    if not isinstance(value, str) or value not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}")
    return value


def _manifest(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest("manifest is required (a JSON object)")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_MANIFEST_BYTES:
        raise BadRequest(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes", 413)
    try:
        parse_document(value)  # bounded in size and depth: untrusted.parse_json
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    return value


def _signature(value: Any) -> str:
    if not isinstance(value, str) or not SIGNATURE_RE.fullmatch(value):
        raise BadRequest("signature must be 0x followed by 130 hex digits", 422)
    return value


def _scheme(value: Any) -> str:
    if value is None or value == "":
        return "eip191"
    if not isinstance(value, str) or value not in SCHEMES:
        raise BadRequest(f"signature_scheme must be one of {', '.join(SCHEMES)}", 422)
    return value


def _priority(value: Any, default: Priority) -> Priority:
    if value is None or value == "":
        return default
    if not isinstance(value, str) or value not in PRIORITIES:
        raise BadRequest(f"priority must be one of {', '.join(PRIORITIES)}", 422)
    return Priority(value)


def _callback(value: Any) -> str | None:
    """A webhook URL's syntax; the addresses it reaches are checked when the notifier calls."""
    if value is None or value == "":
        return None
    try:
        return check_url(value)
    except BadInput as exc:
        raise BadRequest(str(exc)) from exc


def _tenant(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return check_tenant(value)
    except BadInput as exc:
        raise BadRequest(str(exc)) from exc
