"""`anchorline up --secure`: every service logged in as itself, and the logins it hands out."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import KafkaError, Producer
from eth_account import Account
from system_under_test import System, local_settings, run_up, wait_terminal

from anchorline.events import JobKind, JobRequested, new_id, utcnow
from anchorline.proof.manifest import sign_eip191
from anchorline.store.blobstore import FileBlobStore
from anchorline.stream import codec


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with run_up(local_settings(tmp_path_factory.mktemp("secured")), "--secure") as running:
        yield running


def logins(system: System) -> Path:
    return system.settings.state_dir / "kafka-credentials"


def client_properties(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    return dict(line.split("=", 1) for line in lines)


def signed(content: bytes) -> tuple[str, str]:
    """A manifest of `content` and its signature by a new creator."""
    creator = Account.create()
    document = {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": creator.address,
    }
    return json.dumps(document), sign_eip191(document, creator.key.hex())


def signed_request(system: System, content: bytes) -> JobRequested:
    uri, _ = FileBlobStore(system.settings.blobs).put_file(io.BytesIO(content))
    manifest, signature = signed(content)
    return JobRequested(new_id(), JobKind.ANCHOR, uri, manifest, signature, utcnow())




def test_logins_are_owner_only_and_the_external_producers_is_printed(secured: System) -> None:
    directory = logins(secured)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(directory.iterdir())
    assert {path.name for path in files} >= {"external-producer.properties", "admin.env"}
    assert {stat.S_IMODE(path.stat().st_mode) for path in files} == {0o600}
    external = directory / "external-producer.properties"
    printed = "".join(secured.output)
    assert f"external producers log in with {external}" in printed
    assert client_properties(external)["sasl.password"] not in printed


def test_an_http_job_and_an_external_producers_job_both_complete(secured: System) -> None:
    """The gateway, the three stages and the projector each run as their own principal."""
    content = f"over http {new_id()}".encode()
    manifest, signature = signed(content)
    response = httpx.post(
        f"{secured.base_url}/v1/jobs",
        data={"kind": "anchor", "manifest": manifest, "signature": signature},
        files={"content": ("content.bin", content)},
        timeout=30,
    )
    assert response.status_code == 202, response.text

    request = signed_request(secured, f"from another system {new_id()}".encode())
    external = client_properties(logins(secured) / "external-producer.properties")
    producer = Producer(external | {"acks": "all"})
    producer.produce(
        secured.settings.topics.jobs_requested,
        key=request.job_id.encode(),
        value=codec.encode(request),
    )
    assert producer.flush(30) == 0

    for job_id in (response.json()["job_id"], request.job_id):
        record = wait_terminal(secured, job_id)
        assert record["state"] == "succeeded", record
        assert record["result"]["anchor"]["txHash"]


def test_the_external_producer_cannot_forge_a_status(secured: System) -> None:
    external = client_properties(logins(secured) / "external-producer.properties")
    refused: list[int] = []
    producer = Producer(external | {"message.timeout.ms": 8000})
    producer.produce(
        secured.settings.topics.job_status,
        value=b"a forged JobStatus",
        on_delivery=lambda error, _: refused.append(error.code() if error else 0),
    )
    producer.flush(30)
    assert refused == [KafkaError.TOPIC_AUTHORIZATION_FAILED]


def test_operator_commands_run_with_the_admin_login_and_not_with_a_services(
    secured: System,
) -> None:
    def dlq_list(principal: str) -> subprocess.CompletedProcess[str]:
        env = os.environ | secured.settings.as_env() | _env_file(logins(secured), principal)
        command = [sys.executable, "-m", "anchorline.cli", "dlq", "list"]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    assert dlq_list("admin").returncode == 0
    refused = dlq_list("external-producer")
    assert refused.returncode == 1
    assert "authorization failed" in refused.stderr.lower()


def _env_file(directory: Path, principal: str) -> dict[str, str]:
    lines = (directory / f"{principal}.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)
