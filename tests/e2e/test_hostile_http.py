"""A hostile HTTP client against `anchorline up`: refused with a 4xx, and the gateway lives on."""

from __future__ import annotations

import hashlib
import json

import httpx
from eth_account import Account
from system_under_test import System, wait_terminal

from anchorline.proof.manifest import sign_eip191


def signed_form(content: bytes) -> dict[str, str]:
    account = Account.create()
    document = {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": account.address,
    }
    signature = sign_eip191(document, "0x" + bytes(account.key).hex())
    return {"kind": "verify", "manifest": json.dumps(document), "signature": signature}


def test_a_content_uri_form_field_naming_a_server_file_is_refused(system: System) -> None:
    """The issue's request: no content file, the content named by a form field instead."""
    fields = signed_form(b"anything")
    manifest = fields.pop("manifest").encode()
    response = httpx.post(
        f"{system.base_url}/v1/jobs",
        data={**fields, "content_uri": "file:///etc/hostname"},
        files={"manifest": ("manifest.json", manifest)},  # keeps the body multipart
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("unknown field 'content_uri'")


def test_deep_and_oversized_bodies_are_refused_and_the_gateway_lives_on(system: System) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/v1/jobs", "/v1/jobs/batch"):
        response = httpx.post(
            f"{system.base_url}{path}",
            content=deep,
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 400, response.text
        assert "nests deeper than" in response.json()["error"]
    huge = b'{"kind": "' + b"x" * (2 << 20) + b'"}'
    response = httpx.post(
        f"{system.base_url}/v1/jobs",
        content=huge,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert httpx.get(f"{system.base_url}/healthz", timeout=10).status_code == 200


def test_a_huge_header_is_refused_and_the_gateway_lives_on(system: System) -> None:
    """The HTTP parser bounds a request's headers (http11.py; httptools alone would buffer them
    all and answer 200): a 431, or the connection cut while the client still sends."""
    try:
        response = httpx.get(
            f"{system.base_url}/healthz", headers={"x-filler": "a" * (1 << 20)}, timeout=30
        )
        assert response.status_code == 431
    except httpx.TransportError:
        pass
    assert httpx.get(f"{system.base_url}/healthz", timeout=10).status_code == 200


def test_a_tenants_content_is_verified_from_its_own_place_and_hidden_from_others(
    system: System,
) -> None:
    """The gateway stores a tenant's content apart, and the verifier reads it from there."""
    content = b"acme's own content, end to end"
    fields = signed_form(content)
    by_form = httpx.post(
        f"{system.base_url}/v1/jobs",
        data={**fields, "tenant": "acme"},
        files={"content": ("c.bin", content)},
        timeout=30,
    )
    assert by_form.status_code == 202, by_form.text
    uploaded = httpx.post(f"{system.base_url}/v1/blobs?tenant=acme", content=content, timeout=30)
    uri = uploaded.json()["content_uri"]
    json_job = {**fields, "content_uri": uri}
    by_json = httpx.post(
        f"{system.base_url}/v1/jobs", json={**json_job, "tenant": "acme"}, timeout=30
    )
    assert by_json.status_code == 202, by_json.text
    for response in (by_form, by_json):
        job = wait_terminal(system, response.json()["job_id"])
        assert job["state"] == "succeeded", job
        assert job["result"]["verify"]["fileHash"] == "0x" + hashlib.sha256(content).hexdigest()

    other = httpx.post(
        f"{system.base_url}/v1/jobs", json={**json_job, "tenant": "bolt"}, timeout=30
    )
    assert other.status_code == 422
    assert "is not in the blob store" in other.json()["error"]
