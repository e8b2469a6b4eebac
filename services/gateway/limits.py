"""Bounds on request bodies, per route: counted as the body streams in, refused with 413."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import Message

from anchorline.errors import BadInput
from anchorline.settings import Settings
from anchorline.untrusted import MAX_DEPTH, parse_json
from anchorline_gateway.problems import BadRequest

# Beside the content file, a multipart job request carries a manifest, a signature, a few short
# fields and the boundaries between them.
MULTIPART_OVERHEAD_BYTES = 256 * 1024
# A manifest sent as a JSON object sits inside the body (`jobs` → item → `manifest`).
BODY_DEPTH = MAX_DEPTH + 3


@dataclass(frozen=True)
class Limits:
    """The largest body each route reads; the settings of the same names set them."""

    job_body_bytes: int = 1 << 20
    batch_body_bytes: int = 16 << 20
    blob_bytes: int = 1 << 30

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            job_body_bytes=settings.max_job_body_bytes,
            batch_body_bytes=settings.max_batch_body_bytes,
            blob_bytes=settings.max_blob_bytes,
        )

    @property
    def multipart_bytes(self) -> int:
        return self.blob_bytes + MULTIPART_OVERHEAD_BYTES


class BodyTooLarge(BadRequest):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the body is larger than this route takes ({max_bytes} bytes)", 413)


def capped(request: Request, max_bytes: int) -> Request:
    """The same request, whose body raises BodyTooLarge once more than `max_bytes` came in.

    A declared Content-Length over the cap is refused before a byte is read; a chunked body (or
    one that lies about its length) is refused as soon as it passes the cap.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(max_bytes)
    received = 0
    upstream = request.receive

    async def receive() -> Message:
        nonlocal received
        message = await upstream()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise BodyTooLarge(max_bytes)
        return message

    return Request(request.scope, receive)


async def read_body(request: Request, max_bytes: int) -> bytes:
    chunks = [chunk async for chunk in capped(request, max_bytes).stream()]
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int) -> Any:
    """The body parsed as JSON by the one parser of outside JSON, bounded in size and depth."""
    body = await read_body(request, max_bytes)
    try:
        return parse_json(body, what="body", max_bytes=max_bytes, max_depth=BODY_DEPTH)
    except BadInput as exc:
        raise BadRequest(str(exc)) from exc
