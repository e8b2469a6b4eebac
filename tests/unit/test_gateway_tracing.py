"""The gateway's trace context: a client's valid traceparent is continued, any other ignored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from anchorline.store.blobstore import FileBlobStore
from anchorline.stream.tracing import parse
from anchorline_gateway.app import Gateway, create_app
from anchorline_gateway.publisher import MemoryPublisher
from anchorline_gateway.reads import SqlJobReader

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
VALID = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def client(
    blobs: FileBlobStore, publisher: MemoryPublisher, engine: Engine
) -> Iterator[TestClient]:
    with TestClient(create_app(Gateway(blobs, publisher, SqlJobReader(engine)))) as client:
        yield client


def submit(client: TestClient, signed: Any, headers: list[tuple[str, str]]) -> None:
    data = {"kind": "verify", "manifest": signed.text, "signature": signed.signature}
    files = {"content": ("doc.bin", signed.content)}
    response = client.post("/v1/jobs", data=data, files=files, headers=headers)
    assert response.status_code == 202, response.text


def test_a_clients_traceparent_is_continued_by_the_published_records(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: Any
) -> None:
    submit(client, sign_manifest(b"traced"), [("traceparent", VALID)])
    found = {parse(value) for value in publisher.traceparents}
    (context,) = found  # the request and its queued status: one span of the gateway's
    assert context is not None and context.trace_id == TRACE
    assert context.traceparent != VALID


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("traceparent", "00-nonsense")],
        [("traceparent", VALID.upper())],
        [("traceparent", VALID + "-more")],
        [("traceparent", VALID), ("traceparent", VALID)],  # W3C: more than one is invalid
    ],
)
def test_no_or_a_bad_traceparent_starts_a_new_trace_and_is_no_error(
    client: TestClient,
    publisher: MemoryPublisher,
    sign_manifest: Any,
    headers: list[tuple[str, str]],
) -> None:
    submit(client, sign_manifest(b"untraced"), headers)
    (context,) = {parse(value) for value in publisher.traceparents}
    assert context is not None and context.trace_id != TRACE
