"""Cancel and retry through the API, on the gateway's in-memory publisher and a migrated SQLite
job store (the projector's own store applies what the gateway published)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from anchorline.events import JobRequested, JobStatus, Stage, StageState, refs_of
from anchorline.store.blobstore import FileBlobStore
from anchorline.stream import codec
from anchorline.stream.cancellations import parse_record
from anchorline_gateway.app import Gateway, create_app
from anchorline_gateway.idempotency import SqlIdempotencyKeys
from anchorline_gateway.publisher import MemoryPublisher
from anchorline_gateway.reads import SqlJobReader
from anchorline_projector.store import SqlJobStore

KEYS = {"key-a": "acme", "key-b": "bolt"}
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


@pytest.fixture
def client(tmp_path: Path, publisher: MemoryPublisher, engine: Engine) -> Iterator[TestClient]:
    gateway = Gateway(
        FileBlobStore(tmp_path / "b"),
        publisher,
        SqlJobReader(engine),
        KEYS,
        idempotency=SqlIdempotencyKeys(engine, ttl_s=60),
    )
    with TestClient(create_app(gateway)) as client:
        yield client


def submitted(client: TestClient, sign: Callable[..., Any], publisher: MemoryPublisher) -> str:
    signed = sign(b"a document")
    fields = {"kind": "proof", "manifest": signed.text, "signature": signed.signature}
    answer = client.post("/v1/jobs", headers=A, data=fields, files={"content": ("c", b"x")})
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["job_id"]
    return job_id


def project(publisher: MemoryPublisher, engine: Engine) -> None:
    """What the projector would do: keep the requests, apply the statuses."""
    store = SqlJobStore(engine)
    store.keep_requests(
        [
            (e.job_id.encode(), codec.encode(e))
            for e in publisher.events
            if isinstance(e, JobRequested)
        ]
    )
    store.apply_batch([e for e in publisher.events if isinstance(e, JobStatus)])


def stage_says(engine: Engine, job: JobRequested, state: StageState, **changes: Any) -> None:
    (ref,) = refs_of(job)
    SqlJobStore(engine).apply_batch([ref.status(Stage.VERIFY, state, **changes)])


def request_of(publisher: MemoryPublisher) -> JobRequested:
    (job,) = [e for e in publisher.events if isinstance(e, JobRequested)]
    return job


def test_a_queued_job_is_cancelled_at_once_and_the_stages_are_told(
    client: TestClient, publisher: MemoryPublisher, engine: Engine, sign_manifest: Any
) -> None:
    job_id = submitted(client, sign_manifest, publisher)
    project(publisher, engine)
    answer = client.post(f"/v1/jobs/{job_id}/cancel", headers=A)
    assert answer.status_code == 202, answer.text
    assert answer.json()["state"] == "cancelled"
    ((topic, key, value),) = publisher.records
    assert topic == "anchorline.jobs.cancelled"
    assert parse_record(key, value) == (job_id, 0)
    project(publisher, engine)
    job = client.get(f"/v1/jobs/{job_id}", headers=A).json()
    assert job["state"] == "cancelled"
    assert job["history"][-1]["note"] == "cancelled through the API"
    again = client.post(f"/v1/jobs/{job_id}/cancel", headers=A)
    assert again.status_code == 409 and "already ended (cancelled)" in again.json()["error"]


def test_another_tenants_job_cannot_be_cancelled_or_retried(
    client: TestClient, publisher: MemoryPublisher, engine: Engine, sign_manifest: Any
) -> None:
    job_id = submitted(client, sign_manifest, publisher)
    project(publisher, engine)
    for action in ("cancel", "retry"):
        answer = client.post(f"/v1/jobs/{job_id}/{action}", headers=B)
        assert answer.status_code == 404
    assert client.post("/v1/jobs/nope/cancel", headers=A).status_code == 404
    assert client.post("/v1/jobs/a%20b/retry", headers=A).status_code == 400
    assert client.post(f"/v1/jobs/{job_id}/retry").status_code == 401
    assert not publisher.records


def test_a_failed_job_runs_again_as_its_next_run_with_the_same_request(
    client: TestClient, publisher: MemoryPublisher, engine: Engine, sign_manifest: Any
) -> None:
    job_id = submitted(client, sign_manifest, publisher)
    project(publisher, engine)
    job = request_of(publisher)
    refused = client.post(f"/v1/jobs/{job_id}/retry", headers=A)
    assert refused.status_code == 409 and "is queued" in refused.json()["error"]
    stage_says(engine, job, StageState.FAILED, error="bad signature")
    publisher.events.clear()
    publisher.generations.clear()
    answer = client.post(f"/v1/jobs/{job_id}/retry", headers=A)
    assert answer.status_code == 202, answer.text
    assert answer.json()["run"] == 1
    again, queued = publisher.events
    assert again == job
    assert publisher.generations == [1, 1]
    assert isinstance(queued, JobStatus)
    assert (queued.state, queued.generation, queued.note) == (
        StageState.QUEUED,
        1,
        "retried through the API as run 1",
    )
    project(publisher, engine)
    record = client.get(f"/v1/jobs/{job_id}", headers=A).json()
    assert record["state"] == "queued"
    assert record["history"][-1]["generation"] == 1
    # a run that dies too is retried as the run after it
    stage_says(engine, job, StageState.DEAD, generation=1)
    third = client.post(f"/v1/jobs/{job_id}/retry", headers=A)
    assert third.status_code == 202 and third.json()["run"] == 2


def test_a_second_retry_of_the_same_run_is_refused(
    client: TestClient, publisher: MemoryPublisher, engine: Engine, sign_manifest: Any
) -> None:
    job_id = submitted(client, sign_manifest, publisher)
    project(publisher, engine)
    stage_says(engine, request_of(publisher), StageState.DEAD)
    assert client.post(f"/v1/jobs/{job_id}/retry", headers=A).status_code == 202
    # the projector has not applied the retry yet: the job still reads dead in run 0
    twice = client.post(f"/v1/jobs/{job_id}/retry", headers=A)
    assert twice.status_code == 409 and "already being retried" in twice.json()["error"]


def test_a_job_whose_request_was_not_kept_cannot_be_retried(
    client: TestClient, publisher: MemoryPublisher, engine: Engine, sign_manifest: Any
) -> None:
    job_id = submitted(client, sign_manifest, publisher)
    SqlJobStore(engine).apply_batch([e for e in publisher.events if isinstance(e, JobStatus)])
    stage_says(engine, request_of(publisher), StageState.FAILED)
    answer = client.post(f"/v1/jobs/{job_id}/retry", headers=A)
    assert answer.status_code == 409 and "anchorline dlq" in answer.json()["error"]


def test_kafka_down_answers_503_and_frees_the_retry(
    client: TestClient, publisher: MemoryPublisher, engine: Engine, sign_manifest: Any
) -> None:
    job_id = submitted(client, sign_manifest, publisher)
    project(publisher, engine)
    stage_says(engine, request_of(publisher), StageState.FAILED)
    publisher.down = True
    assert client.post(f"/v1/jobs/{job_id}/retry", headers=A).status_code == 503
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=A).status_code == 409
    publisher.down = False
    assert client.post(f"/v1/jobs/{job_id}/retry", headers=A).status_code == 202
