"""The receipt route and the signature_scheme field of submissions."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from proven_jobs import ProvenJobs, prove_window
from sqlalchemy.engine import Engine

from anchorline.events import JobKind, JobRequested
from anchorline.proof.manifest import sign
from anchorline.proof.receipt import FAIL, verify_receipt
from anchorline.proof.trust import KeyPeriod, TrustRoots, parse_trust
from anchorline.store.blobstore import FileBlobStore
from anchorline_gateway.app import Gateway, create_app
from anchorline_gateway.publisher import MemoryPublisher
from anchorline_gateway.reads import SqlJobReader
from anchorline_projector.store import SqlJobStore

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

SignManifest = Callable[..., Any]


@pytest.fixture
def client(tmp_path: Path, publisher: MemoryPublisher, engine: Engine) -> Iterator[TestClient]:
    gateway = Gateway(FileBlobStore(tmp_path / "blobs"), publisher, SqlJobReader(engine))
    with TestClient(create_app(gateway)) as client:
        yield client


@pytest.fixture
def window(creator: LocalAccount, engine: Engine) -> ProvenJobs:
    """job-0 and job-1 anchored, job-2 a proof job, all in the jobs table via the projector."""
    proven = prove_window(creator)
    SqlJobStore(engine).apply_batch(proven.statuses)
    return proven


def test_an_anchored_job_has_a_receipt_that_checks(client: TestClient, window: ProvenJobs) -> None:
    response = client.get("/v1/jobs/job-0/receipt")
    assert response.status_code == 200
    receipt = response.json()
    assert (receipt["jobId"], receipt["anchor"]["txHash"]) == ("job-0", "0x" + "7a" * 32)
    assert [c.name for c in verify_receipt(receipt, window.chain) if c.outcome == FAIL] == []


def test_a_proof_job_in_an_anchored_batch_has_its_anchor(
    client: TestClient, window: ProvenJobs
) -> None:
    response = client.get("/v1/jobs/job-2/receipt")
    assert response.status_code == 200
    receipt = response.json()
    assert (receipt["kind"], receipt["anchor"]["txHash"]) == ("proof", "0x" + "7a" * 32)
    assert [c.name for c in verify_receipt(receipt, window.chain) if c.outcome == FAIL] == []


def test_a_proof_job_alone_has_a_receipt_without_anchor(
    client: TestClient, creator: LocalAccount, engine: Engine
) -> None:
    proven = prove_window(creator, kinds=(JobKind.PROOF, JobKind.PROOF))
    SqlJobStore(engine).apply_batch(proven.statuses)
    response = client.get("/v1/jobs/job-1/receipt")
    assert response.status_code == 200
    assert response.json()["anchor"] is None


def test_an_unknown_job_is_404(client: TestClient) -> None:
    response = client.get("/v1/jobs/nobody/receipt")
    assert response.status_code == 404
    assert response.json() == {"error": "no job nobody"}


def test_a_job_not_yet_anchored_is_409_with_the_reason(
    client: TestClient, creator: LocalAccount, engine: Engine
) -> None:
    proven = prove_window(creator)
    SqlJobStore(engine).apply_batch([s for s in proven.statuses if s.stage != "anchor"])
    response = client.get("/v1/jobs/job-0/receipt")
    assert response.status_code == 409
    assert response.json()["error"] == "the job is running at its prove stage"


def test_submissions_carry_the_signature_scheme(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest, creator: Any
) -> None:
    signed = sign_manifest()
    signature = sign(signed.document, "0x" + bytes(creator.key).hex(), scheme="eip712")
    data = {
        "kind": "verify",
        "manifest": json.dumps(signed.document),
        "signature": signature,
        "signature_scheme": "eip712",
    }
    response = client.post("/v1/jobs", files={"content": ("c", signed.content)}, data=data)
    assert response.status_code == 202, response.text
    (request,) = [e for e in publisher.events if isinstance(e, JobRequested)]
    assert request.signature_scheme == "eip712"


def test_the_scheme_defaults_to_eip191(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    signed = sign_manifest()
    body = {"kind": "verify", "manifest": signed.text, "signature": signed.signature}
    response = client.post("/v1/jobs", files={"content": ("c", signed.content)}, data=body)
    assert response.status_code == 202
    (request,) = [e for e in publisher.events if isinstance(e, JobRequested)]
    assert request.signature_scheme == "eip191"


def test_an_unknown_scheme_is_422(
    client: TestClient, publisher: MemoryPublisher, sign_manifest: SignManifest
) -> None:
    signed = sign_manifest()
    body = {
        "kind": "verify",
        "manifest": signed.text,
        "signature": signed.signature,
        "signature_scheme": "eip4361",
    }
    response = client.post("/v1/jobs", files={"content": ("c", signed.content)}, data=body)
    assert response.status_code == 422
    assert response.json()["error"] == "signature_scheme must be one of eip191, eip712"
    assert publisher.events == []


def trust_client(tmp_path: Path, publisher: MemoryPublisher, engine: Engine, **extra: Any) -> Any:
    gateway = Gateway(
        FileBlobStore(tmp_path / "blobs"),
        publisher,
        SqlJobReader(engine),
        api_keys={"tenant-key": "acme"},
        **extra,
    )
    return TestClient(create_app(gateway))


def test_the_trust_document_is_served_to_anyone_at_its_well_known_url(
    tmp_path: Path, publisher: MemoryPublisher, engine: Engine
) -> None:
    roots = TrustRoots(
        31337,
        "0x" + "ab" * 20,
        1,
        (KeyPeriod("0x" + "cd" * 20, 0),),
        (KeyPeriod("0x" + "ef" * 20, 0),),
    )
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(roots.as_json()))
    with trust_client(tmp_path, publisher, engine, trust_file=path) as client:
        response = client.get("/.well-known/anchorline-trust.json")  # no API key
        assert response.status_code == 200
        assert parse_trust(response.content) == parse_trust(json.dumps(roots.as_json()))
        path.write_text('{"format": "something else"}')
        assert client.get("/.well-known/anchorline-trust.json").status_code == 503
        path.unlink()
        assert client.get("/.well-known/anchorline-trust.json").status_code == 404


def test_without_a_trust_document_the_well_known_url_is_404(
    tmp_path: Path, publisher: MemoryPublisher, engine: Engine
) -> None:
    with trust_client(tmp_path, publisher, engine) as client:
        response = client.get("/.well-known/anchorline-trust.json")
    assert response.status_code == 404
    assert response.json() == {"error": "this gateway publishes no trust document"}
