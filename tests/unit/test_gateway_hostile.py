"""What a hostile HTTP client sends: unknown fields, wrong types, unbounded strings and bodies.

Each request gets a 4xx whose `error` says why; nothing is published and nothing is stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from eth_account.signers.local import LocalAccount
from proven_jobs import prove_window
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from anchorline.events import JobStatus, Stage
from anchorline.store.blobstore import FileBlobStore
from anchorline_gateway.app import Gateway, create_app
from anchorline_gateway.idempotency import SqlIdempotencyKeys
from anchorline_gateway.limits import Limits
from anchorline_gateway.publisher import MemoryPublisher
from anchorline_gateway.reads import SqlJobReader, encode_cursor
from anchorline_projector.store import SqlJobStore

SMALL = Limits(job_body_bytes=4096, batch_body_bytes=8192, blob_bytes=1000)


@pytest.fixture
def client(
    blobs: FileBlobStore, publisher: MemoryPublisher, engine: Engine
) -> Iterator[TestClient]:
    gateway = Gateway(blobs, publisher, SqlJobReader(engine), limits=SMALL)
    with TestClient(create_app(gateway)) as client:
        yield client


def error_of(response: Any) -> str:
    body: dict[str, str] = response.json()
    return body["error"]


def form(signed: Any, **fields: str) -> dict[str, Any]:
    data = {"kind": "verify", "manifest": signed.text, "signature": signed.signature, **fields}
    return {"files": {"content": ("doc.bin", signed.content)}, "data": data}


def json_job(client: TestClient, signed: Any, **fields: Any) -> dict[str, Any]:
    uri = client.post("/v1/blobs", content=signed.content).json()["content_uri"]
    body = {"kind": "verify", "content_uri": uri, "manifest": signed.text}
    return {**body, "signature": signed.signature, **fields}


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


# --- content URIs and unknown fields -------------------------------------------------------------


@pytest.mark.parametrize("with_content", [True, False])
def test_a_content_uri_form_field_is_refused_by_name(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: Any, with_content: bool
) -> None:
    signed = sign_manifest()
    request = form(signed, content_uri="file:///etc/hostname")
    if not with_content:  # the manifest as a file part keeps the body multipart
        request["files"] = {"manifest": ("m.json", signed.text.encode())}
        del request["data"]["manifest"]
    response = client.post("/v1/jobs", **request)
    assert response.status_code == 400
    assert error_of(response).startswith("unknown field 'content_uri'")
    assert publisher.events == []


def test_any_unknown_form_field_is_refused_by_name(
    client: TestClient, publisher: MemoryPublisher, blobs: FileBlobStore, sign_manifest: Any
) -> None:
    response = client.post("/v1/jobs", **form(sign_manifest(), urgency="high"))
    assert response.status_code == 400
    assert "'urgency'" in error_of(response)
    known = "kind, manifest, signature, signature_scheme, tenant, callback_url, priority, content"
    assert known in error_of(response)
    assert publisher.events == []
    assert files_under(blobs.root / "sha256") == [], "nothing stored for a refused request"


def test_a_repeated_form_field_is_400(client: TestClient, sign_manifest: Any) -> None:
    signed = sign_manifest()
    response = client.post(
        "/v1/jobs",
        files=[("content", ("a", signed.content)), ("content", ("b", b"other"))],
        data={"kind": "verify", "manifest": signed.text, "signature": signed.signature},
    )
    assert response.status_code == 400
    assert error_of(response) == "field 'content' is given more than once"


def test_content_as_a_plain_field_or_kind_as_a_file_is_400(
    client: TestClient, sign_manifest: Any
) -> None:
    signed = sign_manifest()
    plain = form(signed, content="file:///etc/hostname")
    plain["files"] = {"manifest": ("m.json", signed.text.encode())}
    del plain["data"]["manifest"]
    response = client.post("/v1/jobs", **plain)
    assert (response.status_code, error_of(response)) == (400, "field 'content' must be a file")
    as_file = form(signed)
    as_file["files"]["kind"] = ("kind.txt", b"verify")
    del as_file["data"]["kind"]
    response = client.post("/v1/jobs", **as_file)
    assert response.status_code == 400
    assert error_of(response) == "field 'kind' must be a plain field, not a file"


def test_an_unknown_json_field_is_refused_by_name(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: Any
) -> None:
    body = json_job(client, sign_manifest(), path="/etc/hostname")
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 400
    assert error_of(response).startswith("unknown field 'path'")
    assert publisher.events == []


def test_an_unknown_field_name_is_quoted_short(client: TestClient, sign_manifest: Any) -> None:
    body = json_job(client, sign_manifest(), **{"x" * 1000: 1})
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 400
    assert len(error_of(response)) < 200


def test_a_batch_item_pointing_at_a_server_file_is_refused(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: Any
) -> None:
    good = json_job(client, sign_manifest())
    bad = {**good, "content_uri": "file:///etc/hostname"}
    response = client.post("/v1/jobs/batch", json={"jobs": [good, bad]})
    assert response.status_code == 400
    (problem,) = response.json()["jobs"]
    assert problem["index"] == 1 and "content_uri must be sha256:" in problem["error"]
    assert client.post("/v1/jobs/batch", json={"jobs": [good], "x": 1}).status_code == 400
    assert publisher.events == []


# --- wrong types and unbounded strings -----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "status", "reason"),
    [
        ("kind", ["anchor"], 400, "kind must be one of"),
        ("kind", {}, 400, "kind must be one of"),
        ("kind", 1, 400, "kind must be one of"),
        ("manifest", "\ud800", 400, "lone surrogate"),
        ("manifest", ["x"], 400, "manifest is required"),
        ("manifest", 7, 400, "manifest is required"),
        ("manifest", "[" * 40 + "]" * 40, 400, "manifest nests deeper than"),
        ("manifest", {"a": "\ud800"}, 400, "lone surrogate"),
        ("tenant", "\ud800", 400, "lone surrogate"),
        ("tenant", "t" * 65, 400, "tenant must be 1 to 64 characters"),
        ("tenant", "../other", 400, "tenant must be"),
        ("tenant", "a/b", 400, "tenant must be"),
        ("tenant", "acme\n", 400, "tenant must be"),
        ("tenant", ["acme"], 400, "tenant must be"),
        ("tenant", 3, 400, "tenant must be"),
        ("signature", ["0x"], 422, "signature must be"),
        ("signature", None, 422, "signature must be"),
        ("signature_scheme", ["eip191"], 422, "signature_scheme must be"),
        ("signature_scheme", {"eip712": 1}, 422, "signature_scheme must be"),
        ("content_uri", 5, 400, "content_uri must be"),
        ("content_uri", "sha256:" + "0" * 64 + "\n", 400, "content_uri must be"),
    ],
)
def test_a_json_field_of_the_wrong_type_or_size_is_a_4xx_with_the_reason(
    client: TestClient,
    publisher: MemoryPublisher,
    sign_manifest: Any,
    field: str,
    value: Any,
    status: int,
    reason: str,
) -> None:
    body = json_job(client, sign_manifest(), **{field: value})
    raw = json.dumps(body)  # json.dumps writes a lone surrogate as the \ud800 escape
    response = client.post("/v1/jobs", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert reason in error_of(response)
    assert publisher.events == []


def test_a_two_megabyte_tenant_is_refused(client: TestClient, sign_manifest: Any) -> None:
    body = json_job(client, sign_manifest(), tenant="t" * (2 << 20))
    assert client.post("/v1/jobs", json=body).status_code == 413
    assert (
        client.post("/v1/jobs", **form(sign_manifest(), tenant="t" * (2 << 20))).status_code == 413
    )
    response = client.post("/v1/jobs", **form(sign_manifest(), tenant="t" * (100 << 10)))
    assert response.status_code == 400
    assert "exceeded maximum size" in error_of(response)


def test_a_good_tenant_is_kept(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: Any
) -> None:
    response = client.post("/v1/jobs", **form(sign_manifest(), tenant="acme-2.eu_west"))
    assert response.status_code == 202
    assert publisher.events[0].tenant == "acme-2.eu_west"  # type: ignore[union-attr]


@pytest.mark.parametrize("key", ["k" * 256, "clé", "a\tb"])
def test_an_idempotency_key_must_be_printable_ascii(
    client: TestClient, sign_manifest: Any, key: str
) -> None:
    response = client.post(
        "/v1/jobs", headers=[("Idempotency-Key", key.encode("latin-1"))], **form(sign_manifest())
    )
    assert response.status_code == 400
    assert "printable ASCII" in error_of(response)


def test_prefer_wait_nan_does_not_wait(client: TestClient, sign_manifest: Any) -> None:
    response = client.post("/v1/jobs", headers={"Prefer": "wait=nan"}, **form(sign_manifest()))
    assert response.status_code == 202


@pytest.mark.parametrize(
    "cursor",
    [
        encode_cursor(datetime(2024, 1, 1), "bad\x00id"),
        encode_cursor(datetime(2024, 1, 1), "x" * 65),
        "W1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1td",  # [[[[...
        "eA" * 600,
    ],
)
def test_a_forged_cursor_is_400(client: TestClient, cursor: str) -> None:
    response = client.get("/v1/jobs", params={"cursor": cursor})
    assert response.status_code == 400
    assert error_of(response) == "cursor is not one this API returned"


def test_a_receipt_for_an_odd_job_id_is_400(client: TestClient) -> None:
    assert client.get("/v1/jobs/a%0Ab/receipt").status_code == 400
    assert client.get("/v1/jobs/" + "x" * 65 + "/receipt").status_code == 400
    assert client.get("/v1/jobs/abc%0A").status_code == 400


def _without(status: JobStatus, stage: Stage, name: str) -> JobStatus:
    if status.stage != stage or status.result is None:
        return status
    result = json.loads(status.result)
    result.pop(name, None)
    return dataclasses.replace(status, result=json.dumps(result))


@pytest.mark.parametrize(
    ("stage", "name"), [(Stage.VERIFY, "fileHash"), (Stage.ANCHOR, "contract")]
)
def test_a_receipt_of_an_incomplete_record_is_409_with_the_reason(
    client: TestClient, creator: LocalAccount, engine: Engine, stage: Stage, name: str
) -> None:
    proven = prove_window(creator)
    SqlJobStore(engine).apply_batch([_without(s, stage, name) for s in proven.statuses])
    response = client.get("/v1/jobs/job-0/receipt")
    assert response.status_code == 409
    assert name in error_of(response)


# --- body limits ---------------------------------------------------------------------------------


def test_a_json_job_body_over_the_limit_is_413_with_the_limit(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: Any
) -> None:
    body = json_job(client, sign_manifest(), padding="x" * 5000)
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 413
    assert "4096 bytes" in error_of(response)
    assert publisher.events == []


def test_a_chunked_body_is_counted_as_it_streams(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"kind": "'
        for _ in range(100):
            yield b"x" * 100

    response = client.post(
        "/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


def test_a_batch_body_over_the_limit_is_413(client: TestClient, sign_manifest: Any) -> None:
    item = json_job(client, sign_manifest())
    response = client.post("/v1/jobs/batch", json={"jobs": [item] * 40})
    assert response.status_code == 413
    assert "8192 bytes" in error_of(response)


def test_a_blob_over_the_limit_is_413_and_leaves_nothing_behind(
    client: TestClient, blobs: FileBlobStore
) -> None:
    assert client.post("/v1/blobs", content=b"x" * 1000).status_code == 201
    declared = client.post("/v1/blobs", content=b"y" * 1001)
    assert declared.status_code == 413
    assert "1000 bytes" in error_of(declared)

    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b"z" * 100

    streamed = client.post("/v1/blobs", content=chunks())
    assert streamed.status_code == 413
    assert files_under(blobs.root / "staging") == []
    stored = files_under(blobs.root / "sha256")
    assert [path.name for path in stored] == [hashlib.sha256(b"x" * 1000).hexdigest()]


def test_a_multipart_body_over_the_limit_is_413(
    client: TestClient, publisher: MemoryPublisher, blobs: FileBlobStore, sign_manifest: Any
) -> None:
    big = sign_manifest(b"b" * (SMALL.multipart_bytes + 1))
    response = client.post("/v1/jobs", **form(big))
    assert response.status_code == 413
    assert publisher.events == []
    assert files_under(blobs.root) == []


DEEP = textwrap.dedent(
    """
    import sys, tempfile
    from pathlib import Path
    import py_ecc.bn128  # what raises the recursion limit in the services
    import sqlalchemy as sa
    from starlette.testclient import TestClient
    from anchorline.store.blobstore import FileBlobStore
    from anchorline_gateway.app import Gateway, create_app
    from anchorline_gateway.publisher import MemoryPublisher
    from anchorline_gateway.reads import SqlJobReader

    root = Path(tempfile.mkdtemp())
    engine = sa.create_engine(f"sqlite:///{root / 'db'}")
    app = create_app(Gateway(FileBlobStore(root), MemoryPublisher(), SqlJobReader(engine)))
    deep = "[" * 100_000 + "]" * 100_000
    deep_manifest = "[" * 32_000 + "]" * 32_000  # just under the manifest's size limit
    with TestClient(app) as client:
        uri = client.post("/v1/blobs", content=b"x").json()["content_uri"]
        job = f'{{"kind": "verify", "content_uri": "{uri}", "manifest": "{deep_manifest}"}}'
        for path, body in [("/v1/jobs", deep), ("/v1/jobs/batch", deep), ("/v1/jobs", job)]:
            response = client.post(
                path, content=body, headers={"content-type": "application/json"}
            )
            print(response.status_code, response.json()["error"])
    """
)


def test_deeply_nested_json_is_400_not_a_crash() -> None:
    """In a process of its own: on today's code the parse overflows the C stack (SIGSEGV)."""
    done = subprocess.run(
        [sys.executable, "-c", DEEP], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("400 ") and "nests deeper than" in line for line in lines), lines


def test_a_refused_multipart_request_stores_no_content(
    client: TestClient, blobs: FileBlobStore, sign_manifest: Any
) -> None:
    assert client.post("/v1/jobs", **form(sign_manifest(), kind="teleport")).status_code == 400
    assert client.post("/v1/jobs", **form(sign_manifest(), signature="0x1")).status_code == 422
    assert files_under(blobs.root) == []


def test_a_database_that_does_not_answer_is_503_not_500(
    tmp_path: Path, engine: Engine, sign_manifest: Any
) -> None:
    gateway = Gateway(
        FileBlobStore(tmp_path / "b"),
        MemoryPublisher(),
        SqlJobReader(engine),
        idempotency=SqlIdempotencyKeys(engine),
    )
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE idempotency_keys"))
        connection.execute(sa.text("DROP TABLE jobs"))
    with TestClient(create_app(gateway)) as client:
        keyed = client.post("/v1/jobs", headers={"Idempotency-Key": "k"}, **form(sign_manifest()))
        listed = client.get("/v1/jobs")
    for response in (keyed, listed):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert "jobs database did not answer" in error_of(response)
