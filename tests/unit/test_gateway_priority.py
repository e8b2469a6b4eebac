"""A job's priority through the gateway: taken, checked, defaulted per tenant, and shown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from anchorline.events import JobKind, JobRequested, JobStatus, Priority, Stage, StageState
from anchorline.store.blobstore import FileBlobStore
from anchorline.stream.topics import Topics
from anchorline_gateway.app import Gateway, create_app
from anchorline_gateway.publisher import MemoryPublisher
from anchorline_gateway.reads import SqlJobReader
from anchorline_projector.store import SqlJobStore

SignManifest = Callable[..., Any]
DEFAULTS = {"acme": Priority.LOW, "*": Priority.HIGH}


@pytest.fixture
def client(
    blobs: FileBlobStore, publisher: MemoryPublisher, engine: Engine
) -> Iterator[TestClient]:
    gateway = Gateway(blobs, publisher, SqlJobReader(engine), priority_defaults=DEFAULTS)
    with TestClient(create_app(gateway)) as client:
        yield client


def job(client: TestClient, sign_manifest: SignManifest, **fields: Any) -> dict[str, Any]:
    signed = sign_manifest()
    query = {"tenant": fields["tenant"]} if fields.get("tenant") else {}
    uri = client.post("/v1/blobs", content=signed.content, params=query).json()["content_uri"]
    body = {"kind": "proof", "content_uri": uri, "manifest": signed.text}
    return {**body, "signature": signed.signature, **fields}


def published(publisher: MemoryPublisher) -> list[tuple[Priority, Priority | None]]:
    """Each request's priority, with its queued status's."""
    requests = [e for e in publisher.events if isinstance(e, JobRequested)]
    statuses = {e.job_id: e for e in publisher.events if isinstance(e, JobStatus)}
    return [(r.priority, statuses[r.job_id].priority) for r in requests]


@pytest.mark.parametrize("priority", list(Priority))
def test_a_json_job_carries_its_priority_to_its_request_status_and_topic(
    client: TestClient,
    publisher: MemoryPublisher,
    sign_manifest: SignManifest,
    priority: Priority,
) -> None:
    response = client.post("/v1/jobs", json=job(client, sign_manifest, priority=str(priority)))
    assert response.status_code == 202
    assert published(publisher) == [(priority, priority)]
    lane = {Priority.HIGH: ".high", Priority.NORMAL: "", Priority.LOW: ".low"}[priority]
    assert Topics().for_event(publisher.events[0]) == f"anchorline.jobs.requested{lane}"


def test_a_multipart_job_takes_a_priority_field(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    signed = sign_manifest()
    data = {"kind": "verify", "manifest": signed.text, "signature": signed.signature}
    files = {"content": ("doc.bin", signed.content)}
    response = client.post("/v1/jobs", files=files, data={**data, "priority": "low"})
    assert response.status_code == 202
    assert published(publisher) == [(Priority.LOW, Priority.LOW)]


@pytest.mark.parametrize("value", ["urgent", "HIGH", 1, ["high"], {"p": "high"}, True])
def test_a_priority_outside_the_three_is_422_with_the_reason(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest, value: Any
) -> None:
    response = client.post("/v1/jobs", json=job(client, sign_manifest, priority=value))
    assert response.status_code == 422
    assert response.json()["error"] == "priority must be one of high, normal, low"
    assert publisher.events == []


def test_a_job_naming_no_priority_gets_its_tenants_default(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    for fields in ({"tenant": "acme"}, {"tenant": "bolt"}, {}, {"tenant": "acme", "priority": ""}):
        assert client.post("/v1/jobs", json=job(client, sign_manifest, **fields)).status_code == 202
    named = job(client, sign_manifest, tenant="acme", priority="high")
    assert client.post("/v1/jobs", json=named).status_code == 202
    assert [request for request, _ in published(publisher)] == [
        Priority.LOW,
        Priority.HIGH,
        Priority.HIGH,
        Priority.LOW,
        Priority.HIGH,
    ]


def test_a_batch_takes_a_priority_per_job_and_names_a_bad_one_by_index(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    good = job(client, sign_manifest, priority="high")
    refused = client.post("/v1/jobs/batch", json={"jobs": [good, {**good, "priority": "asap"}]})
    assert refused.status_code == 400
    assert [(p["index"], p["status"]) for p in refused.json()["jobs"]] == [(1, 422)]
    assert publisher.events == []
    accepted = client.post("/v1/jobs/batch", json={"jobs": [good, {**good, "priority": "low"}]})
    assert accepted.status_code == 202
    assert published(publisher) == [(Priority.HIGH, Priority.HIGH), (Priority.LOW, Priority.LOW)]


def test_the_job_record_shows_its_priority(client: TestClient, engine: Engine) -> None:
    store = SqlJobStore(engine)
    urgent = JobStatus(
        "j-1", JobKind.VERIFY, Stage.VERIFY, StageState.QUEUED, priority=Priority.HIGH
    )
    silent = JobStatus("j-1", JobKind.VERIFY, Stage.VERIFY, StageState.RUNNING, attempt=2)
    older = JobStatus("j-2", JobKind.VERIFY, Stage.VERIFY, StageState.QUEUED)
    store.apply_batch([urgent, silent, older])
    assert client.get("/v1/jobs/j-1").json()["priority"] == "high", "a status naming none keeps it"
    assert client.get("/v1/jobs/j-2").json()["priority"] == "normal", "from before priorities"
    listed = {row["job_id"]: row["priority"] for row in client.get("/v1/jobs").json()["jobs"]}
    assert listed == {"j-1": "high", "j-2": "normal"}
