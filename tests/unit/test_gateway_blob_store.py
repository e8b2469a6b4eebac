"""The gateway's use of its blob store: which content a batch lacks, and a store that is down."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from anchorline.infra.ports import free_port
from anchorline.store.blobstore import FileBlobStore
from anchorline.store.s3blobs import S3Access, S3BlobStore
from anchorline_gateway.app import Gateway, create_app
from anchorline_gateway.publisher import MemoryPublisher
from anchorline_gateway.reads import SqlJobReader


@pytest.fixture
def client(
    blobs: FileBlobStore, publisher: MemoryPublisher, engine: Engine
) -> Iterator[TestClient]:
    with TestClient(create_app(Gateway(blobs, publisher, SqlJobReader(engine)))) as client:
        yield client


@pytest.fixture
def unreachable(tmp_path: Path, publisher: MemoryPublisher, engine: Engine) -> Iterator[TestClient]:
    """A gateway whose object store does not answer (nothing listens on its port)."""
    access = S3Access(
        endpoint_url=f"http://127.0.0.1:{free_port()}", access_key_id="a", secret_access_key="b"
    )
    store = S3BlobStore(access.client(), bucket="nowhere", local=FileBlobStore(tmp_path))
    with TestClient(create_app(Gateway(store, publisher, SqlJobReader(engine)))) as client:
        yield client
    store.close()


def job(signed: Any, uri: str, **changes: str) -> dict[str, Any]:
    fields = {"kind": "verify", "content_uri": uri, "manifest": signed.text}
    return {**fields, "signature": signed.signature, **changes}


def test_a_batch_names_each_bad_item_in_order_content_missing_or_malformed(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: Any
) -> None:
    signed = sign_manifest(b"uploaded")
    uri = client.post("/v1/blobs", content=signed.content).json()["content_uri"]
    never = "sha256:" + hashlib.sha256(b"never uploaded").hexdigest()
    items = [
        job(signed, never),
        job(signed, uri, kind="teleport"),
        job(signed, uri),
        job(signed, never),
    ]
    response = client.post("/v1/jobs/batch", json={"jobs": items})
    assert response.status_code == 400
    problems = response.json()["jobs"]
    assert [(p["index"], p["status"]) for p in problems] == [(0, 422), (1, 400), (3, 422)]
    assert "is not in the blob store" in problems[0]["error"]
    assert publisher.events == []


def test_a_batch_of_one_missing_content_is_a_400_naming_it(
    client: TestClient, sign_manifest: Any
) -> None:
    never = "sha256:" + hashlib.sha256(b"never uploaded").hexdigest()
    response = client.post("/v1/jobs/batch", json={"jobs": [job(sign_manifest(), never)]})
    assert response.status_code == 400
    assert [(p["index"], p["status"]) for p in response.json()["jobs"]] == [(0, 422)]


def test_an_object_store_that_does_not_answer_is_a_503_to_retry(
    unreachable: TestClient, publisher: MemoryPublisher, sign_manifest: Any
) -> None:
    signed = sign_manifest(b"content")
    uri = "sha256:" + hashlib.sha256(signed.content).hexdigest()
    answers = [
        unreachable.post("/v1/blobs", content=b"content"),
        unreachable.post("/v1/jobs", json=job(signed, uri)),
        unreachable.post("/v1/jobs/batch", json={"jobs": [job(signed, uri)]}),
        unreachable.post(
            "/v1/jobs",
            files={"content": ("doc.bin", signed.content)},
            data={"kind": "verify", "manifest": signed.text, "signature": signed.signature},
        ),
    ]
    for response in answers:
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert "object store did not answer" in response.json()["error"]
    assert publisher.events == []
