"""Schedules through the API on a migrated SQLite store: created, listed, paused, resumed and
deleted per tenant; hostile bodies refused with the reason."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from anchorline.events import JobRequested, JobStatus, utcnow
from anchorline.store.blobstore import FileBlobStore
from anchorline.store.schedules import SqlSchedules
from anchorline.stream.publisher import MemoryPublisher
from anchorline_gateway.app import Gateway, create_app
from anchorline_gateway.reads import SqlJobReader
from anchorline_gateway.schedules import ScheduleBook
from anchorline_projector.store import SqlJobStore
from anchorline_scheduler.service import Scheduler

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
        schedules=ScheduleBook(SqlSchedules(engine), min_interval_s=1, max_per_tenant=3),
    )
    with TestClient(create_app(gateway)) as client:
        yield client


@pytest.fixture
def job(client: TestClient, sign_manifest: Any) -> dict[str, Any]:
    """A JSON job request whose content acme uploaded."""
    signed = sign_manifest(b"a document")
    uploaded = client.post("/v1/blobs", headers=A, content=b"a document")
    assert uploaded.status_code == 201, uploaded.text
    return {
        "kind": "verify",
        "content_uri": uploaded.json()["content_uri"],
        "manifest": signed.text,
        "signature": signed.signature,
    }


def created(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/v1/schedules", headers=A, json=body)
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"] == f"/v1/schedules/{answer.json()['schedule_id']}"
    return dict(answer.json())


def test_a_cron_schedule_is_kept_for_its_tenant_alone(
    client: TestClient, job: dict[str, Any]
) -> None:
    schedule = created(client, {**job, "cron": "*/2 * * * * *", "timezone": "Europe/Paris"})
    assert schedule["state"] == "active" and schedule["tenant"] == "acme"
    assert schedule["job"]["content_uri"] == job["content_uri"]
    assert schedule["next_fire_at"] > utcnow().isoformat()
    path = f"/v1/schedules/{schedule['schedule_id']}"
    assert client.get(path, headers=A).json()["occurrences"] == []
    assert client.get(path, headers=B).status_code == 404
    assert client.post(f"{path}/pause", headers=B).status_code == 404
    assert client.delete(path, headers=B).status_code == 404
    assert client.get("/v1/schedules", headers=B).json()["schedules"] == []


@pytest.mark.parametrize(
    ("extra", "status", "reason"),
    [
        ({}, 400, "either cron"),
        ({"cron": "* * * * *", "at": "2030-01-01T00:00:00Z"}, 400, "either cron"),
        ({"cron": "* * * * * *", "timezone": "Nowhere/Else"}, 400, "IANA"),
        ({"cron": "*/1 * * * * *"}, 200, ""),
        ({"cron": "0 0 31 2 *"}, 400, "never fires"),
        ({"cron": ["* * * * *"]}, 400, "cron expression"),
        ({"at": "2020-01-01T00:00:00Z"}, 400, "in the past"),
        ({"at": "2030-01-01T00:00:00"}, 400, "offset"),
        ({"at": "2026-12-01T00:00:00Z", "timezone": "UTC"}, 400, "timezone goes with cron"),
        ({"cron": "@hourly", "every": 5}, 400, "unknown field"),
        ({"cron": "@hourly", "tenant": "bolt"}, 403, "tenant"),
        ({"cron": "@hourly", "content_uri": "sha256:" + "0" * 64}, 422, "not in the blob store"),
        ({"cron": "@hourly", "content_uri": "file:///etc/passwd"}, 400, "content_uri"),
        ({"cron": "@hourly", "kind": "mine"}, 400, "kind"),
    ],
)
def test_a_bad_schedule_is_refused_with_the_reason(
    client: TestClient, job: dict[str, Any], extra: dict[str, Any], status: int, reason: str
) -> None:
    answer = client.post("/v1/schedules", headers=A, json={**job, **extra})
    if status == 200:
        assert answer.status_code == 201, answer.text
        return
    assert answer.status_code == status, answer.text
    assert reason in answer.json()["error"]


def test_a_body_that_is_not_a_json_object_is_refused(client: TestClient) -> None:
    for body in (b"[]", b"{", b"\xff", b'"x"'):
        answer = client.post(
            "/v1/schedules", headers={**A, "content-type": "application/json"}, content=body
        )
        assert answer.status_code == 400, answer.text


def test_a_tenant_keeps_a_bounded_number_of_schedules(
    client: TestClient, job: dict[str, Any]
) -> None:
    for _ in range(3):
        created(client, {**job, "cron": "@daily"})
    answer = client.post("/v1/schedules", headers=A, json={**job, "cron": "@daily"})
    assert answer.status_code == 409 and "at most 3" in answer.json()["error"]


def test_schedules_are_listed_newest_first_a_page_at_a_time(
    client: TestClient, job: dict[str, Any]
) -> None:
    ids = [created(client, {**job, "cron": "@daily"})["schedule_id"] for _ in range(3)]
    first = client.get("/v1/schedules?limit=2", headers=A).json()
    second = client.get(f"/v1/schedules?limit=2&cursor={first['next_cursor']}", headers=A).json()
    listed = [s["schedule_id"] for s in first["schedules"] + second["schedules"]]
    assert sorted(listed) == sorted(ids) and len(set(listed)) == 3
    assert second["next_cursor"] is None
    assert client.get("/v1/schedules?cursor=nope", headers=A).status_code == 400
    for limit in ("0", "201", "ten"):
        refused = client.get(f"/v1/schedules?limit={limit}", headers=A)
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("limit must be")


def test_pause_resume_and_delete_move_a_schedule_once(
    client: TestClient, job: dict[str, Any]
) -> None:
    path = f"/v1/schedules/{created(client, {**job, 'cron': '@hourly'})['schedule_id']}"
    paused = client.post(f"{path}/pause", headers=A)
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    assert paused.json()["next_fire_at"] is None
    assert client.post(f"{path}/pause", headers=A).status_code == 409
    resumed = client.post(f"{path}/resume", headers=A)
    assert resumed.status_code == 200 and resumed.json()["next_fire_at"] is not None
    assert client.post(f"{path}/resume", headers=A).status_code == 409
    assert client.delete(path, headers=A).json() == {
        "schedule_id": path.rsplit("/", 1)[1],
        "state": "deleted",
    }
    assert client.get(path, headers=A).status_code == 404
    assert client.delete(path, headers=A).status_code == 404
    assert client.get("/v1/schedules/bad%20id", headers=A).status_code == 400


def test_a_fired_occurrence_shows_its_job_and_the_job_its_schedule(
    client: TestClient, job: dict[str, Any], engine: Engine, publisher: MemoryPublisher
) -> None:
    at = utcnow().isoformat()
    schedule = created(client, {**job, "at": at})
    scheduler = Scheduler(SqlSchedules(engine), publisher, tick_s=1, floor_s=1)
    asyncio.run(scheduler.tick())
    (request,) = [e for e in publisher.events if isinstance(e, JobRequested)]
    SqlJobStore(engine).apply_batch([e for e in publisher.events if isinstance(e, JobStatus)])
    shown = client.get(f"/v1/schedules/{schedule['schedule_id']}", headers=A).json()
    assert shown["state"] == "done" and shown["fired"] == 1
    (occurrence,) = shown["occurrences"]
    assert occurrence["job_id"] == request.job_id and occurrence["job"]["state"] == "queued"
    record = client.get(f"/v1/jobs/{request.job_id}", headers=A).json()
    assert record["schedule_id"] == schedule["schedule_id"]
    assert client.get(f"/v1/jobs/{request.job_id}", headers=B).status_code == 404
