"""Idempotency-Key as the IETF draft says: first wins, 409 in flight, 422 for another body."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from anchorline.events import JobRequested
from anchorline.store.blobstore import FileBlobStore
from anchorline.store.db import idempotency_keys
from anchorline_gateway.app import Gateway, create_app
from anchorline_gateway.idempotency import Claim, SqlIdempotencyKeys, fingerprint
from anchorline_gateway.publisher import MemoryPublisher
from anchorline_gateway.reads import SqlJobReader
from anchorline_gateway.submission import job_request

KEY = {"Idempotency-Key": "order-17"}


@pytest.fixture
def keys(engine: Engine) -> SqlIdempotencyKeys:
    return SqlIdempotencyKeys(engine)


@pytest.fixture
def client(
    tmp_path: Path, publisher: MemoryPublisher, engine: Engine, keys: SqlIdempotencyKeys
) -> Iterator[TestClient]:
    blobs = FileBlobStore(tmp_path / "blobs")
    gateway = Gateway(blobs, publisher, SqlJobReader(engine), idempotency=keys)
    with TestClient(create_app(gateway)) as client:
        yield client


def fields(signed: Any, **changes: str) -> dict[str, str]:
    return {"kind": "verify", "manifest": signed.text, "signature": signed.signature, **changes}


def post(client: TestClient, signed: Any, headers: dict[str, str] = KEY, **changes: str) -> Any:
    files = {"content": ("c.bin", signed.content)}
    return client.post("/v1/jobs", headers=headers, data=fields(signed, **changes), files=files)


def requested(publisher: MemoryPublisher) -> list[JobRequested]:
    return [event for event in publisher.events if isinstance(event, JobRequested)]


def test_the_same_request_again_gets_the_first_job(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: Any
) -> None:
    signed = sign_manifest(b"once")
    first = post(client, signed)
    again = post(client, signed)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == first.json()
    assert len(requested(publisher)) == 1


def test_the_same_key_with_another_body_is_422(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: Any
) -> None:
    signed = sign_manifest(b"first body")
    assert post(client, signed).status_code == 202
    other = post(client, signed, kind="anchor")
    assert other.status_code == 422
    assert "used for another request" in other.json()["error"]
    assert post(client, sign_manifest(b"other content")).status_code == 422
    assert [job.kind for job in requested(publisher)] == ["verify"]


def test_a_request_while_the_first_is_in_flight_is_409(
    client: TestClient, publisher: MemoryPublisher, keys: SqlIdempotencyKeys, sign_manifest: Any
) -> None:
    signed = sign_manifest(b"slow")
    uri = "sha256:" + hashlib.sha256(signed.content).hexdigest()
    first = job_request({**fields(signed), "content_uri": uri})
    assert keys.claim(first, key="order-17", fingerprint=fingerprint(first)).claim is Claim.NEW

    response = post(client, signed)
    assert response.status_code == 409
    assert response.headers["retry-after"] == "1"
    assert requested(publisher) == []

    keys.complete(first, key="order-17")
    done = post(client, signed)
    assert (done.status_code, done.json()["job_id"]) == (200, first.job_id)


def test_a_request_kafka_refused_frees_its_key_for_the_retry(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: Any
) -> None:
    signed = sign_manifest(b"broker away")
    publisher.down = True
    assert post(client, signed).status_code == 503
    publisher.down = False
    retried = post(client, signed)
    assert retried.status_code == 202
    assert len(requested(publisher)) == 1


def test_a_claim_left_in_flight_past_its_lease_is_taken_over(
    engine: Engine, sign_manifest: Any
) -> None:
    signed = sign_manifest(b"crashed")
    job = job_request({**fields(signed), "content_uri": "sha256:" + "00" * 32})
    same = fingerprint(job)
    keys = SqlIdempotencyKeys(engine, lease_s=0.0)
    assert keys.claim(job, key="k", fingerprint=same).claim is Claim.NEW
    retry = dataclasses.replace(job, job_id="another-id")
    taken = keys.claim(retry, key="k", fingerprint=same)
    assert (taken.claim, taken.job_id) == (Claim.NEW, job.job_id), "the same job, published again"
    held = SqlIdempotencyKeys(engine, lease_s=3600).claim(retry, key="k", fingerprint=same)
    assert held.claim is Claim.IN_FLIGHT


def test_keys_are_per_tenant_and_a_quoted_key_is_the_same_key(
    client: TestClient, publisher: MemoryPublisher, engine: Engine, sign_manifest: Any
) -> None:
    signed = sign_manifest(b"tenants")
    a = post(client, signed, tenant="a")
    b = post(client, signed, tenant="b")
    quoted = post(client, signed, headers={"Idempotency-Key": '"order-17"'}, tenant="a")
    assert (a.status_code, b.status_code, quoted.status_code) == (202, 202, 200)
    assert a.json()["job_id"] != b.json()["job_id"]
    assert quoted.json()["job_id"] == a.json()["job_id"]
    with engine.connect() as connection:
        rows = connection.execute(sa.select(idempotency_keys.c.tenant, idempotency_keys.c.state))
        assert sorted(rows) == [("a", "done"), ("b", "done")]


def test_a_batch_refuses_an_idempotency_key(client: TestClient) -> None:
    response = client.post("/v1/jobs/batch", headers=KEY, json={"jobs": []})
    assert response.status_code == 400
    assert "POST /v1/jobs only" in response.json()["error"]


def test_a_gateway_without_key_records_says_so(
    tmp_path: Path, engine: Engine, sign_manifest: Any
) -> None:
    gateway = Gateway(FileBlobStore(tmp_path), MemoryPublisher(), SqlJobReader(engine))
    with TestClient(create_app(gateway)) as client:
        assert post(client, sign_manifest()).status_code == 501


class KeyWatchingReader(SqlJobReader):
    """Notes the key's state each time the gateway looks for the job while it waits."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.seen: list[str] = []

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            self.seen += connection.execute(sa.select(idempotency_keys.c.state)).scalars()
        return super().get(job_id)


def test_a_key_is_settled_before_the_gateway_waits_for_the_job(
    tmp_path: Path, engine: Engine, sign_manifest: Any
) -> None:
    reader = KeyWatchingReader(engine)
    gateway = Gateway(
        FileBlobStore(tmp_path), MemoryPublisher(), reader, idempotency=SqlIdempotencyKeys(engine)
    )
    with TestClient(create_app(gateway)) as client:
        response = post(client, sign_manifest(), headers={**KEY, "Prefer": "wait=0.3"})
    assert response.status_code == 202
    assert reader.seen and set(reader.seen) == {"done"}, "a retry meanwhile gets the job, not 409"


def test_an_expired_key_names_a_new_job_and_expired_keys_are_purged(
    engine: Engine, sign_manifest: Any
) -> None:
    signed = sign_manifest(b"long ago")
    job = job_request({**fields(signed), "content_uri": "sha256:" + "00" * 32})
    same = fingerprint(job)
    keeping = SqlIdempotencyKeys(engine)
    for key in ("old", "other"):
        assert keeping.claim(job, key=key, fingerprint=same).claim is Claim.NEW
        keeping.complete(job, key=key)
    assert keeping.claim(job, key="old", fingerprint=same).claim is Claim.DONE
    time.sleep(0.01)

    expiring = SqlIdempotencyKeys(engine, ttl_s=0.001)
    later = dataclasses.replace(job, job_id="a-later-job")
    renewed = expiring.claim(later, key="old", fingerprint=same)
    assert (renewed.claim, renewed.job_id) == (Claim.NEW, "a-later-job")
    with engine.connect() as connection:
        keys = connection.execute(sa.select(idempotency_keys.c.key)).scalars().all()
    assert keys == ["old"], "the other expired key was purged"
