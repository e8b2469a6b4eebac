from __future__ import annotations

import hashlib
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
    own = client.get("/v1/jobs", params={"tenant": "acme"}, headers=A).json()["jobs"]
    assert [j["job_id"] for j in own] == [job_id]
    assert client.get("/v1/jobs", params={"tenant": "acme"}, headers=B).status_code == 403
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


# --- tenancy of blobs and the operators' routes --------------------------------------------------

ADMIN = {"Authorization": "Bearer the-operator"}


@pytest.fixture
def admin_client(
    tmp_path: Path, publisher: MemoryPublisher, engine: Engine
) -> Iterator[TestClient]:
    gateway = Gateway(
        FileBlobStore(tmp_path / "b"),
        publisher,
        SqlJobReader(engine),
        KEYS,
        admin_keys=frozenset({"the-operator"}),
        pipeline=FixedView(),
    )
    with TestClient(create_app(gateway)) as client:
        yield client


class FixedView:
    def snapshot(self) -> dict[str, Any]:
        return {"stages": {}, "projector": {"lag": 0}}

    def close(self) -> None:
        pass


def json_job(signed: Any, uri: str) -> dict[str, str]:
    return {
        "kind": "verify",
        "content_uri": uri,
        "manifest": signed.text,
        "signature": signed.signature,
    }


def test_a_tenant_can_neither_use_nor_detect_another_tenants_blob(
    client: TestClient,
    publisher: MemoryPublisher,
    tmp_path: Path,
    sign_manifest: Callable[..., Any],
) -> None:
    secret = sign_manifest(b"acme's secret draft")
    uploaded = client.post("/v1/blobs", headers=A, content=secret.content)
    assert uploaded.status_code == 201
    uri = uploaded.json()["content_uri"]
    digest = uri.removeprefix("sha256:")
    assert (tmp_path / "b" / "tenants" / "acme" / "sha256" / digest[:2] / digest).exists()
    assert client.post("/v1/jobs", headers=A, json=json_job(secret, uri)).status_code == 202

    never = sign_manifest(b"nobody uploaded this")
    never_uri = "sha256:" + hashlib.sha256(never.content).hexdigest()
    by_b = client.post("/v1/jobs", headers=B, json=json_job(secret, uri))
    unknown = client.post("/v1/jobs", headers=B, json=json_job(never, never_uri))
    assert by_b.status_code == unknown.status_code == 422
    assert by_b.json()["error"].replace(uri, "X") == unknown.json()["error"].replace(never_uri, "X")

    # B may upload the same bytes itself, and gets the same answer A got.
    again = client.post("/v1/blobs", headers=B, content=secret.content)
    assert (again.status_code, again.json()) == (201, uploaded.json())
    assert client.post("/v1/jobs", headers=B, json=json_job(secret, uri)).status_code == 202
    requests = [e for e in publisher.events if isinstance(e, JobRequested)]
    assert [r.tenant for r in requests] == ["acme", "bolt"]


def test_a_key_cannot_upload_for_another_tenant(client: TestClient) -> None:
    response = client.post("/v1/blobs?tenant=bolt", headers=A, content=b"x")
    assert response.status_code == 403
    assert client.post("/v1/blobs?tenant=acme", headers=A, content=b"x").status_code == 201


def test_multipart_content_is_stored_for_the_keys_tenant(
    client: TestClient, tmp_path: Path, sign_manifest: Callable[..., Any]
) -> None:
    signed = sign_manifest(b"bolt's file")
    assert submit(client, signed, B).status_code == 202
    digest = hashlib.sha256(signed.content).hexdigest()
    assert FileBlobStore(tmp_path / "b").path_of(digest, tenant="bolt").exists()
    assert not FileBlobStore(tmp_path / "b").path_of(digest, tenant=None).exists()


def test_operator_routes_need_an_admin_key(admin_client: TestClient) -> None:
    for path in ("/v1/pipeline", "/metrics"):
        tenant = admin_client.get(path, headers=A)
        assert tenant.status_code == 403, path
        assert "admin key" in tenant.json()["error"]
        assert admin_client.get(path).status_code == 401
        assert admin_client.get(path, headers=ADMIN).status_code == 200
    assert (
        admin_client.get("/v1/pipeline", headers={"X-API-Key": "the-operator"}).status_code == 200
    )


def test_operator_routes_are_closed_to_tenants_without_admin_keys(client: TestClient) -> None:
    assert client.get("/metrics", headers=A).status_code == 403
    assert client.get("/v1/pipeline", headers=B).status_code == 403


def test_an_admin_sees_every_tenants_jobs_and_global_metrics(
    admin_client: TestClient,
    publisher: MemoryPublisher,
    engine: Engine,
    sign_manifest: Callable[..., Any],
) -> None:
    assert submit(admin_client, sign_manifest(b"a"), A).status_code == 202
    assert submit(admin_client, sign_manifest(b"b"), B).status_code == 202
    project(publisher, engine)
    assert len(admin_client.get("/v1/jobs", headers=ADMIN).json()["jobs"]) == 2
    assert len(admin_client.get("/v1/jobs", headers=A).json()["jobs"]) == 1
    metrics = admin_client.get("/metrics", headers=ADMIN).text
    assert 'anchorline_jobs{kind="verify",state="queued"} 2' in metrics.splitlines()


def test_admin_keys_parse_into_a_set() -> None:
    assert Settings(admin_keys=" op1, ,op2").admin_key_set == frozenset({"op1", "op2"})
    assert Settings().admin_key_set == frozenset()


def test_admin_keys_alone_close_the_api(tmp_path: Path, engine: Engine) -> None:
    gateway = Gateway(
        FileBlobStore(tmp_path / "b"),
        MemoryPublisher(),
        SqlJobReader(engine),
        admin_keys=frozenset({"the-operator"}),
    )
    with TestClient(create_app(gateway)) as client:
        assert client.get("/v1/jobs").status_code == 401
        assert client.get("/v1/jobs", headers=ADMIN).status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/openapi.json").status_code == 200
