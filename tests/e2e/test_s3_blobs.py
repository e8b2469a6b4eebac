"""`anchorline up --blobs s3`: S3Proxy started with the system, every blob kept in its bucket."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from eth_account import Account
from system_under_test import System, local_settings, run_up, wait_terminal

from anchorline.cli.up import LOCAL_BLOB_URL
from anchorline.infra.ports import free_port
from anchorline.infra.postgres import PostgresServer
from anchorline.proof.manifest import sign_eip191
from anchorline.store.blobs import s3_access

PART = 5 << 20


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[System]:
    settings = local_settings(
        tmp_path_factory.mktemp("s3-system"),
        database_url=postgres.new_database("s3"),
        batch_max_wait_s=1.0,
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
        s3_access_key_id="e2e",
        s3_secret_access_key=os.urandom(12).hex(),
        s3_part_size=PART,
    )
    with run_up(settings, "--blobs", "s3") as running:
        yield running


def signed(content: bytes) -> dict[str, str]:
    creator = Account.create()
    document = {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": creator.address,
    }
    return {"manifest": json.dumps(document), "signature": sign_eip191(document, creator.key.hex())}


def objects(system: System) -> dict[str, int]:
    """Key → size of every object in the bucket `up` made (BLOB_URL's default), read with boto3."""
    settings = replace(system.settings, blob_url=LOCAL_BLOB_URL)
    assert settings.s3_blobs == ("anchorline", "blobs/")
    listed = s3_access(settings).client().list_objects_v2(Bucket="anchorline")
    return {o["Key"]: o["Size"] for o in listed.get("Contents", []) if o["Key"][-1] != "/"}


def test_a_verify_job_reads_its_content_from_the_bucket(system: System) -> None:
    content = os.urandom(PART + 4321)  # uploaded in two parts
    upload = httpx.post(
        f"{system.base_url}/v1/blobs", params={"tenant": "acme"}, content=content, timeout=60
    )
    assert upload.status_code == 201, upload.text
    uri = upload.json()["content_uri"]
    digest = hashlib.sha256(content).hexdigest()
    assert uri == f"sha256:{digest}"

    job: dict[str, Any] = {
        "kind": "verify",
        "content_uri": uri,
        "tenant": "acme",
        **signed(content),
    }
    response = httpx.post(f"{system.base_url}/v1/jobs", json=job, timeout=30)
    assert response.status_code == 202, response.text
    record = wait_terminal(system, response.json()["job_id"])

    assert record["state"] == "succeeded", record
    assert record["result"]["verify"]["fileHash"] == f"0x{digest}"
    assert objects(system)[f"blobs/tenants/acme/sha256/{digest[:2]}/{digest}"] == len(content)
    assert not (system.settings.state_dir / "blobs").exists()  # nothing on the local disk


def test_another_tenant_cannot_name_that_content(system: System) -> None:
    content = os.urandom(1000)
    uri = httpx.post(
        f"{system.base_url}/v1/blobs", params={"tenant": "acme"}, content=content, timeout=30
    ).json()["content_uri"]
    job = {"kind": "verify", "content_uri": uri, "tenant": "bolt", **signed(content)}
    response = httpx.post(f"{system.base_url}/v1/jobs", json=job, timeout=30)
    assert response.status_code == 422
    assert "is not in the blob store" in response.json()["error"]


def test_an_anchor_job_submitted_with_its_content_goes_through(system: System) -> None:
    content = b"a small file, one PUT " + os.urandom(16)
    response = httpx.post(
        f"{system.base_url}/v1/jobs",
        data={"kind": "anchor", **signed(content)},
        files={"content": ("content.bin", content)},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    record = wait_terminal(system, response.json()["job_id"])
    assert record["state"] == "succeeded", record
    assert record["result"]["anchor"]["txHash"]
    digest = hashlib.sha256(content).hexdigest()
    assert objects(system)[f"blobs/sha256/{digest[:2]}/{digest}"] == len(content)
