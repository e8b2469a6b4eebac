"""`anchorline up --secure`: every service logged in as itself, and the logins it hands out."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from confluent_kafka import KafkaError, Producer
from eth_account import Account
from system_under_test import System, local_settings, run_up, wait_terminal

from anchorline.events import JobKind, JobRequested, new_id, utcnow
from anchorline.proof.manifest import sign_eip191
from anchorline.store.blobstore import FileBlobStore
from anchorline.stream import codec

T = TypeVar("T")


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


def test_the_consoles_dead_letter_desk_reads_and_replays_under_its_own_login(
    secured: System,
) -> None:
    """The gateway's own login reads no message: its desk logs in as the dead-letter desk
    (it answered 503, authorization failed, when it used the gateway's)."""
    request = signed_request(secured, f"dead, then replayed {new_id()}".encode())
    external = client_properties(logins(secured) / "external-producer.properties")
    producer = Producer(external | {"acks": "all"})
    producer.produce(
        secured.settings.topics.jobs_requested,
        key=request.job_id.encode(),
        value=codec.encode(request),
        headers=[("retry_topic-attempts", b"9" * 30)],  # forged: dead-lettered at once
    )
    assert producer.flush(30) == 0
    desk = f"{secured.base_url}/v1/dead-letters"

    def listed() -> list[dict[str, object]]:
        response = httpx.get(desk, params={"job": request.job_id}, timeout=60)
        assert response.status_code == 200, response.text
        return list(response.json()["letters"])

    (letter,) = _eventually(listed)
    shown = httpx.get(f"{desk}/{letter['coordinates']}", timeout=60)
    assert shown.status_code == 200, shown.text
    assert shown.json()["message"]["job_id"] == request.job_id
    chosen = {"coordinates": [letter["coordinates"]]}
    dry = httpx.post(f"{desk}/replay", json=chosen, timeout=60)
    assert dry.status_code == 200, dry.text
    assert (dry.json()["letters"], dry.json()["replayed"]) == ([letter["coordinates"]], 0)
    done = httpx.post(f"{desk}/replay", json={**chosen, "dry_run": False}, timeout=60)
    assert done.status_code == 200, done.text
    assert done.json()["replayed"] == 1

    def succeeded() -> dict[str, object] | None:
        job = httpx.get(f"{secured.base_url}/v1/jobs/{request.job_id}", timeout=10).json()
        return job if job.get("state") == "succeeded" else None

    job = _eventually(succeeded)
    notes = [event["note"] or "" for event in job["history"]]  # type: ignore[attr-defined]
    assert f"replayed from {letter['coordinates']}" in notes


def _eventually(check: Callable[[], T], timeout: float = 120.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError("not in time")
