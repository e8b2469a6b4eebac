from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from anchorline.events import JobKind, JobRequested, JobStatus, Stage, StageState
from anchorline.store.blobstore import FileBlobStore
from anchorline.stream import codec
from anchorline_gateway.app import Gateway, create_app
from anchorline_gateway.idempotency import SqlIdempotencyKeys
from anchorline_gateway.publisher import MemoryPublisher
from anchorline_gateway.reads import SqlJobReader, encode_cursor
from anchorline_projector.store import SqlJobStore

SignManifest = Callable[..., Any]
MakeStatus = Callable[..., JobStatus]
At = Callable[[float], datetime]


@pytest.fixture
def client(
    blobs: FileBlobStore, publisher: MemoryPublisher, engine: Engine
) -> Iterator[TestClient]:
    gateway = Gateway(
        blobs, publisher, SqlJobReader(engine), idempotency=SqlIdempotencyKeys(engine)
    )
    with TestClient(create_app(gateway)) as client:
        yield client


def multipart(signed: Any, **fields: str) -> dict[str, Any]:
    data = {"kind": "verify", "manifest": signed.text, "signature": signed.signature}
    data.update(fields)
    return {"files": {"content": ("doc.bin", signed.content)}, "data": data}


def error_of(response: Any) -> str:
    body: dict[str, str] = response.json()
    return body["error"]


# --- submitting ----------------------------------------------------------------------------------


def test_multipart_submission_is_accepted_and_published(
    client: TestClient,
    publisher: MemoryPublisher,
    blobs: FileBlobStore,
    sign_manifest: SignManifest,
) -> None:
    signed = sign_manifest(b"the document")
    response = client.post("/v1/jobs", **multipart(signed, kind="anchor", tenant="acme"))
    assert response.status_code == 202
    body = response.json()
    assert body["status_url"] == f"/v1/jobs/{body['job_id']}"
    assert response.headers["location"] == body["status_url"]
    assert (body["kind"], body["state"]) == ("anchor", "queued")

    request, queued = publisher.events
    assert isinstance(request, JobRequested) and isinstance(queued, JobStatus)
    digest = hashlib.sha256(b"the document").hexdigest()
    assert request.job_id == body["job_id"]
    assert request.kind is JobKind.ANCHOR
    assert request.content_uri == f"sha256:{digest}"
    assert (request.manifest, request.signature, request.tenant) == (
        signed.text,
        signed.signature,
        "acme",
    )
    assert blobs.path_of(digest, tenant="acme").read_bytes() == b"the document"
    assert (queued.job_id, queued.stage, queued.state) == (
        body["job_id"],
        Stage.VERIFY,
        StageState.QUEUED,
    )
    assert (queued.attempt, queued.progress, queued.final) == (1, 0, False)
    assert queued.submitted_at == request.submitted_at
    # What the gateway publishes keeps to the Avro contract.
    assert codec.decode(codec.encode(request), JobRequested).job_id == body["job_id"]


def test_json_submission_refers_to_an_uploaded_blob(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    signed = sign_manifest(b"uploaded first")
    upload = client.post("/v1/blobs", content=b"uploaded first")
    assert upload.status_code == 201
    uri = upload.json()["content_uri"]
    assert upload.json() == {
        "content_uri": f"sha256:{hashlib.sha256(b'uploaded first').hexdigest()}",
        "size": len(b"uploaded first"),
    }
    response = client.post(
        "/v1/jobs",
        json={
            "kind": "proof",
            "content_uri": uri,
            "manifest": signed.document,
            "signature": signed.signature,
        },
    )
    assert response.status_code == 202
    request = publisher.events[0]
    assert isinstance(request, JobRequested)
    assert request.kind is JobKind.PROOF
    assert request.content_uri == uri
    assert json.loads(request.manifest) == signed.document


def test_json_submission_takes_the_manifest_as_text_too(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    signed = sign_manifest(b"abc")
    uri = client.post("/v1/blobs", content=b"abc").json()["content_uri"]
    body = {"kind": "verify", "content_uri": uri, "manifest": signed.text}
    response = client.post("/v1/jobs", json={**body, "signature": signed.signature})
    assert response.status_code == 202
    assert publisher.events[0].manifest == signed.text  # type: ignore[union-attr]


def test_manifest_may_be_uploaded_as_a_file_beside_the_content(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    signed = sign_manifest(b"two files")
    response = client.post(
        "/v1/jobs",
        files={
            "content": ("doc.bin", signed.content),
            "manifest": ("manifest.json", signed.text.encode()),
        },
        data={"kind": "verify", "signature": signed.signature},
    )
    assert response.status_code == 202
    assert publisher.events[0].manifest == signed.text  # type: ignore[union-attr]


def test_an_unexpected_file_is_400(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    request = multipart(sign_manifest())
    request["files"]["extra"] = ("x.bin", b"x")
    response = client.post("/v1/jobs", **request)
    assert response.status_code == 400
    assert error_of(response).startswith("unknown field 'extra'")
    assert publisher.events == []


@pytest.mark.parametrize("kind", ["", "prove", "VERIFY", "delete"])
def test_unknown_kind_is_400(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest, kind: str
) -> None:
    response = client.post("/v1/jobs", **multipart(sign_manifest(), kind=kind))
    assert response.status_code == 400
    assert error_of(response) == "kind must be one of verify, proof, anchor"
    assert publisher.events == []


@pytest.mark.parametrize("manifest", ["{not json", "[1, 2]"])
def test_manifest_that_is_not_a_json_object_is_400(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest, manifest: str
) -> None:
    response = client.post("/v1/jobs", **multipart(sign_manifest(), manifest=manifest))
    assert response.status_code == 400
    assert "manifest" in error_of(response)
    assert publisher.events == []


def test_missing_manifest_is_400(client: TestClient, sign_manifest: SignManifest) -> None:
    request = multipart(sign_manifest())
    del request["data"]["manifest"]
    response = client.post("/v1/jobs", **request)
    assert response.status_code == 400
    assert error_of(response) == "manifest is required (a JSON object)"


def test_multipart_without_content_is_400(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    signed = sign_manifest()
    response = client.post(
        "/v1/jobs",
        files={"other": ("x.txt", b"x")},
        data={"kind": "verify", "manifest": signed.text, "signature": signed.signature},
    )
    assert response.status_code == 400
    assert publisher.events == []
    response = client.post(
        "/v1/jobs",
        files={"manifest": ("m.json", signed.text.encode())},
        data={"kind": "verify", "signature": signed.signature},
    )
    assert response.status_code == 400
    assert error_of(response) == "multipart body lacks the 'content' file"


@pytest.mark.parametrize(
    "content_uri", [None, "sha256:xyz", "file:///etc/passwd", "sha256:" + "AB" * 32]
)
def test_json_submission_without_a_blob_uri_is_400(
    client: TestClient, sign_manifest: SignManifest, content_uri: str | None
) -> None:
    signed = sign_manifest()
    body = {"kind": "verify", "manifest": signed.text, "signature": signed.signature}
    if content_uri is not None:
        body["content_uri"] = content_uri
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 400
    assert "content_uri must be sha256:" in error_of(response)


def test_json_body_that_is_not_an_object_is_400(client: TestClient) -> None:
    response = client.post("/v1/jobs", json=["kind", "verify"])
    assert response.status_code == 400
    response = client.post(
        "/v1/jobs", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response).startswith("body is not JSON")


@pytest.mark.parametrize("signature", ["", "0x1234", "11" * 65, "0x" + "zz" * 65])
def test_malformed_signature_is_422(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest, signature: str
) -> None:
    response = client.post("/v1/jobs", **multipart(sign_manifest(), signature=signature))
    assert response.status_code == 422
    assert error_of(response) == "signature must be 0x followed by 130 hex digits"
    assert publisher.events == []


def test_unknown_blob_is_422(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    signed = sign_manifest(b"never uploaded")
    uri = f"sha256:{hashlib.sha256(b'never uploaded').hexdigest()}"
    response = client.post(
        "/v1/jobs",
        json={
            "kind": "verify",
            "content_uri": uri,
            "manifest": signed.text,
            "signature": signed.signature,
        },
    )
    assert response.status_code == 422
    assert "is not in the blob store" in error_of(response)
    assert publisher.events == []


def test_other_content_types_are_415(client: TestClient) -> None:
    response = client.post(
        "/v1/jobs", content=b"kind=verify", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert error_of(response) == "send multipart/form-data or application/json"


def test_broker_down_is_503_with_retry_after(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    publisher.down = True
    response = client.post("/v1/jobs", **multipart(sign_manifest()))
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert "did not acknowledge" in error_of(response)
    assert publisher.events == []


# --- reading -------------------------------------------------------------------------------------


@pytest.fixture
def store(engine: Engine) -> SqlJobStore:
    return SqlJobStore(engine)


@pytest.fixture
def five_jobs(store: SqlJobStore, make_status: MakeStatus, at: At) -> list[str]:
    """job-0 .. job-4, submitted a minute apart; even ones are anchor jobs; job-1, job-3 failed."""
    events = []
    for i in range(5):
        kind = JobKind.ANCHOR if i % 2 == 0 else JobKind.VERIFY
        common = {"job_id": f"job-{i}", "kind": kind, "submitted_at": at(60 * i)}
        events.append(make_status(StageState.QUEUED, at=60 * i, **common))
        if i % 2:
            events.append(make_status(StageState.FAILED, at=60 * i + 1, final=True, **common))
    store.apply_batch(events)
    return [f"job-{i}" for i in range(5)]


def test_unknown_job_is_404(client: TestClient) -> None:
    response = client.get("/v1/jobs/no-such-job")
    assert response.status_code == 404
    assert "no job no-such-job" in error_of(response)


def test_job_id_with_odd_characters_is_400(client: TestClient) -> None:
    assert client.get("/v1/jobs/a%20b").status_code == 400


def test_a_job_reads_with_its_history(
    client: TestClient, store: SqlJobStore, make_status: MakeStatus
) -> None:
    store.apply_batch(
        [
            make_status(StageState.QUEUED, at=0),
            make_status(StageState.RUNNING, at=1, progress=0),
            make_status(StageState.RUNNING, at=2, progress=50),
            make_status(StageState.SUCCEEDED, at=3, progress=100, result='{"status": "OK"}'),
        ]
    )
    response = client.get("/v1/jobs/job-1")
    assert response.status_code == 200
    job = response.json()
    assert (job["job_id"], job["kind"], job["state"], job["stage"]) == (
        "job-1",
        "proof",
        "running",
        "verify",
    )
    assert job["result"] == {"verify": {"status": "OK"}}
    assert "rank_state" not in job and "generation" not in job
    assert [(entry["state"], entry["applied"]) for entry in job["history"]] == [
        ("queued", True),
        ("running", True),
        ("succeeded", True),
    ]


def test_list_is_newest_first(client: TestClient, five_jobs: list[str]) -> None:
    response = client.get("/v1/jobs")
    assert response.status_code == 200
    body = response.json()
    assert [job["job_id"] for job in body["jobs"]] == list(reversed(five_jobs))
    assert body["next_cursor"] is None


def test_list_filters_by_state_and_kind(client: TestClient, five_jobs: list[str]) -> None:
    def ids(query: str) -> list[str]:
        return [job["job_id"] for job in client.get(f"/v1/jobs?{query}").json()["jobs"]]

    assert ids("state=failed") == ["job-3", "job-1"]
    assert ids("state=queued") == ["job-4", "job-2", "job-0"]
    assert ids("kind=anchor") == ["job-4", "job-2", "job-0"]
    assert ids("kind=verify&state=failed") == ["job-3", "job-1"]
    assert ids("kind=anchor&state=failed") == []


def test_list_filters_by_creation_time_and_pages_within_it(
    client: TestClient, five_jobs: list[str], at: At
) -> None:
    def ids(**query: str) -> list[str]:
        response = client.get("/v1/jobs", params=query)
        assert response.status_code == 200, response.text
        return [job["job_id"] for job in response.json()["jobs"]]

    assert ids(since=at(60).isoformat()) == ["job-4", "job-3", "job-2", "job-1"]
    assert ids(until=at(120).isoformat()) == ["job-1", "job-0"]  # until: not at
    window = {"since": at(60).isoformat(), "until": at(240).isoformat()}
    assert ids(**window, kind="verify") == ["job-3", "job-1"]
    first = client.get("/v1/jobs", params={**window, "limit": "2"}).json()
    assert [job["job_id"] for job in first["jobs"]] == ["job-3", "job-2"]
    rest = ids(**window, limit="2", cursor=first["next_cursor"])
    assert rest == ["job-1"]
    naive_utc = at(180).replace(tzinfo=None).isoformat()  # no zone: UTC
    assert ids(since=naive_utc) == ["job-4", "job-3"]
    zoned = at(180).astimezone(timezone(timedelta(hours=5))).isoformat()
    assert ids(since=zoned) == ["job-4", "job-3"]


@pytest.mark.parametrize(
    "query",
    [
        {"since": "yesterday"},
        {"until": "2024-13-01"},
        {"since": "0001-01-01T00:00:00+14:00"},  # before year 1 in UTC
        {"since": "2024-05-01" + "0" * 100},
        {"tenant": "no spaces allowed"},
    ],
)
def test_a_bad_time_or_tenant_filter_is_400(client: TestClient, query: dict[str, str]) -> None:
    response = client.get("/v1/jobs", params=query)
    assert response.status_code == 400
    assert error_of(response)


def test_list_filters_by_tenant(
    client: TestClient, store: SqlJobStore, make_status: MakeStatus
) -> None:
    store.apply_batch(
        [
            make_status(StageState.QUEUED, job_id="a-1", tenant="acme"),
            make_status(StageState.QUEUED, job_id="b-1", tenant="bolt", at=1),
            make_status(StageState.QUEUED, job_id="none", at=2),
        ]
    )
    listed = client.get("/v1/jobs", params={"tenant": "acme"}).json()["jobs"]
    assert [job["job_id"] for job in listed] == ["a-1"]
    assert len(client.get("/v1/jobs").json()["jobs"]) == 3


def test_list_pages_with_a_cursor(client: TestClient, five_jobs: list[str]) -> None:
    seen: list[str] = []
    pages = 0
    url = "/v1/jobs?limit=2"
    while True:
        body = client.get(url).json()
        pages += 1
        assert len(body["jobs"]) <= 2
        seen.extend(job["job_id"] for job in body["jobs"])
        if body["next_cursor"] is None:
            break
        url = f"/v1/jobs?limit=2&cursor={body['next_cursor']}"
    assert seen == list(reversed(five_jobs))
    assert pages == 3


def test_cursor_pages_keep_the_filter(client: TestClient, five_jobs: list[str]) -> None:
    first = client.get("/v1/jobs?kind=anchor&limit=2").json()
    assert [job["job_id"] for job in first["jobs"]] == ["job-4", "job-2"]
    second = client.get(f"/v1/jobs?kind=anchor&limit=2&cursor={first['next_cursor']}").json()
    assert [job["job_id"] for job in second["jobs"]] == ["job-0"]
    assert second["next_cursor"] is None


def test_a_full_last_page_has_no_cursor(client: TestClient, five_jobs: list[str]) -> None:
    assert client.get("/v1/jobs?limit=5").json()["next_cursor"] is None
    assert client.get("/v1/jobs?limit=4").json()["next_cursor"] is not None


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "!!!",
        encode_cursor(datetime(2024, 1, 1), "x")[:-3],
        "WzEsMl0",  # [1,2]
        "Ik5vcGUi",  # "Nope"
    ],
)
def test_a_cursor_we_did_not_hand_out_is_400(client: TestClient, cursor: str) -> None:
    response = client.get(f"/v1/jobs?cursor={cursor}")
    assert response.status_code == 400
    assert error_of(response) == "cursor is not one this API returned"


@pytest.mark.parametrize("limit", ["0", "-1", "201", "ten", "1.5"])
def test_a_bad_limit_is_400(client: TestClient, limit: str) -> None:
    response = client.get(f"/v1/jobs?limit={limit}")
    assert response.status_code == 400
    assert error_of(response).startswith("limit must be")


@pytest.mark.parametrize("query", ["state=finished", "kind=prove"])
def test_a_bad_filter_is_400(client: TestClient, query: str) -> None:
    assert client.get(f"/v1/jobs?{query}").status_code == 400


def test_stats_count_jobs_by_state_and_kind(client: TestClient, five_jobs: list[str]) -> None:
    response = client.get("/v1/stats")
    assert response.status_code == 200
    assert response.json() == {
        "total": 5,
        "by_state": {"queued": 3, "failed": 2},
        "by_kind": {"anchor": {"queued": 3}, "verify": {"failed": 2}},
    }


def test_stats_of_an_empty_table(client: TestClient) -> None:
    assert client.get("/v1/stats").json() == {"total": 0, "by_state": {}, "by_kind": {}}


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


# --- idempotency ---------------------------------------------------------------------------------


def test_an_idempotency_key_returns_the_same_job_on_retry(
    client: TestClient,
    publisher: MemoryPublisher,
    engine: Engine,
    sign_manifest: SignManifest,
) -> None:
    signed = sign_manifest(b"retried upload")
    first = client.post("/v1/jobs", headers={"Idempotency-Key": "order-17"}, **multipart(signed))
    assert first.status_code == 202

    again = client.post("/v1/jobs", headers={"Idempotency-Key": "order-17"}, **multipart(signed))

    assert again.status_code == 200
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again.json()["status_url"] == first.json()["status_url"]
    assert len([e for e in publisher.events if isinstance(e, JobRequested)]) == 1


def test_an_idempotency_key_names_one_job_per_tenant(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    signed = sign_manifest(b"two tenants")
    ids = [
        client.post(
            "/v1/jobs", headers={"Idempotency-Key": "k"}, **multipart(signed, tenant=tenant)
        ).json()["job_id"]
        for tenant in ("a", "a", "b")
    ]
    assert ids[0] == ids[1] != ids[2]
    assert client.post("/v1/jobs", **multipart(signed)).json()["job_id"] not in ids


def test_an_overlong_idempotency_key_is_400(
    client: TestClient, sign_manifest: SignManifest
) -> None:
    response = client.post(
        "/v1/jobs", headers={"Idempotency-Key": "x" * 256}, **multipart(sign_manifest(b"x"))
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in error_of(response)


# --- Prefer: wait --------------------------------------------------------------------------------


class FinishingPublisher(MemoryPublisher):
    """Publishes, and has the 'pipeline' finish each job at once in the jobs table."""

    def __init__(self, store: SqlJobStore) -> None:
        super().__init__()
        self.store = store

    async def publish(self, events: Any, **options: Any) -> None:
        await super().publish(events, **options)
        for event in events:
            if isinstance(event, JobStatus):
                done = dataclasses.replace(
                    event, event_id=event.event_id + "-done", state=StageState.SUCCEEDED, final=True
                )
                self.store.apply_batch([event, done])


def test_prefer_wait_answers_with_the_finished_job(
    tmp_path: Path, engine: Engine, sign_manifest: SignManifest
) -> None:
    publisher = FinishingPublisher(SqlJobStore(engine))
    gateway = Gateway(FileBlobStore(tmp_path / "b"), publisher, SqlJobReader(engine))
    with TestClient(create_app(gateway)) as client:
        response = client.post(
            "/v1/jobs", headers={"Prefer": "wait=5"}, **multipart(sign_manifest(b"quick"))
        )
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=5"
    assert response.json()["state"] == "succeeded"


def test_prefer_wait_falls_back_to_202_when_the_job_is_not_done(
    client: TestClient, sign_manifest: SignManifest
) -> None:
    response = client.post(
        "/v1/jobs", headers={"Prefer": "respond-async, wait=0.3"}, **multipart(sign_manifest(b"s"))
    )
    assert response.status_code == 202
    assert "preference-applied" not in response.headers
    assert response.json()["state"] == "queued"


# --- batches -------------------------------------------------------------------------------------


def uploaded(client: TestClient, signed: Any, kind: str = "verify") -> dict[str, Any]:
    uri = client.post("/v1/blobs", content=signed.content).json()["content_uri"]
    return {
        "kind": kind,
        "content_uri": uri,
        "manifest": signed.text,
        "signature": signed.signature,
    }


def test_a_batch_is_accepted_whole(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    items = [uploaded(client, sign_manifest(f"doc {n}".encode()), "anchor") for n in range(3)]
    response = client.post("/v1/jobs/batch", json={"jobs": items})
    assert response.status_code == 202
    accepted = response.json()["jobs"]
    assert len(accepted) == 3 and len({job["job_id"] for job in accepted}) == 3
    requests = [e for e in publisher.events if isinstance(e, JobRequested)]
    queued = [e for e in publisher.events if isinstance(e, JobStatus)]
    assert [r.job_id for r in requests] == [job["job_id"] for job in accepted]
    assert [q.job_id for q in queued] == [job["job_id"] for job in accepted]
    assert [r.content_uri for r in requests] == [item["content_uri"] for item in items]
    for job in accepted:
        assert job["status_url"] == f"/v1/jobs/{job['job_id']}"
        status = client.get(job["status_url"])  # the job route answers (not the router's 404)
        assert status.status_code == 200 or f"no job {job['job_id']}" in status.text


def test_a_batch_with_a_bad_item_is_refused_whole(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    good = uploaded(client, sign_manifest(b"fine"))
    response = client.post(
        "/v1/jobs/batch",
        json={"jobs": [good, {**good, "kind": "teleport"}, {**good, "signature": "0x12"}]},
    )
    assert response.status_code == 400
    problems = response.json()["jobs"]
    assert [(p["index"], p["status"]) for p in problems] == [(1, 400), (2, 422)]
    assert "kind must be one of" in problems[0]["error"]
    assert publisher.events == []


@pytest.mark.parametrize("body", [{"jobs": []}, {"jobs": "x"}, [], {}])
def test_a_batch_needs_a_list_of_jobs(client: TestClient, body: Any) -> None:
    response = client.post("/v1/jobs/batch", json=body)
    assert response.status_code == 400
    assert "job requests" in error_of(response)
