from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from anchorline.errors import ConfigurationError
from anchorline.events import JobRequested, JobStatus
from anchorline.settings import Settings
from anchorline.store.blobstore import FileBlobStore
from anchorline_gateway.app import Gateway, create_app
from anchorline_gateway.publisher import MemoryPublisher
from anchorline_gateway.reads import SqlJobReader
from anchorline_projector.store import SqlJobStore

KEYS = {"key-a": "acme", "key-b": "bolt"}
A = {"Authorization": "Bearer key-a"}
B = {"X-API-Key": "key-b"}


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def client(tmp_path: Path, publisher: MemoryPublisher, engine: Engine) -> Iterator[TestClient]:
    gateway = Gateway(FileBlobStore(tmp_path / "b"), publisher, SqlJobReader(engine), KEYS)
    with TestClient(create_app(gateway)) as client:
        yield client


def submit(client: TestClient, signed: Any, headers: dict[str, str], **data: str) -> Any:
    fields = {"kind": "verify", "manifest": signed.text, "signature": signed.signature, **data}
    files = {"content": ("c.bin", signed.content)}
    return client.post("/v1/jobs", headers=headers, data=fields, files=files)


def project(publisher: MemoryPublisher, engine: Engine) -> None:
    SqlJobStore(engine).apply_batch([e for e in publisher.events if isinstance(e, JobStatus)])


def test_requests_without_a_known_key_are_401(client: TestClient) -> None:
    missing = client.get("/v1/jobs")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "API key is required" in missing.json()["error"]
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.get("/healthz").status_code == 200


def test_a_job_belongs_to_its_keys_tenant_and_is_hidden_from_others(
    client: TestClient,
    publisher: MemoryPublisher,
    engine: Engine,
    sign_manifest: Callable[..., Any],
) -> None:
    accepted = submit(client, sign_manifest(b"acme doc"), A)
    assert accepted.status_code == 202
    (request,) = [e for e in publisher.events if isinstance(e, JobRequested)]
    assert request.tenant == "acme"
    project(publisher, engine)
    job_id = accepted.json()["job_id"]

    assert client.get(f"/v1/jobs/{job_id}", headers=A).status_code == 200
    assert client.get(f"/v1/jobs/{job_id}", headers=B).status_code == 404
    assert client.get(f"/v1/jobs/{job_id}/receipt", headers=B).status_code == 404
    assert [j["job_id"] for j in client.get("/v1/jobs", headers=A).json()["jobs"]] == [job_id]
    assert client.get("/v1/jobs", headers=B).json()["jobs"] == []
    assert client.get("/v1/stats", headers=A).json()["total"] == 1
    assert client.get("/v1/stats", headers=B).json()["total"] == 0


def test_a_key_cannot_submit_for_another_tenant(
    client: TestClient, sign_manifest: Callable[..., Any]
) -> None:
    response = submit(client, sign_manifest(b"x"), A, tenant="bolt")
    assert response.status_code == 403
    assert "acme" in response.json()["error"]


@pytest.mark.parametrize("value", ["nokey", "k:", ":t", "k:../up", "k:a/b", "k:" + "t" * 65])
def test_malformed_api_keys_are_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigurationError):
        _ = Settings(api_keys=value).api_key_tenants


def test_api_keys_parse_into_tenants() -> None:
    assert Settings(api_keys="k1:acme, k2:bolt").api_key_tenants == {"k1": "acme", "k2": "bolt"}
    assert Settings().api_key_tenants == {}
