"""Idempotency-Key on the real gateway, the real broker and real PostgreSQL: concurrent requests
with one key publish one job."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from eth_account import Account
from kafka_helpers import read_topic
from live_gateway import live_gateway

from anchorline.events import JobRequested
from anchorline.infra.postgres import PostgresServer
from anchorline.proof.manifest import sign_eip191
from anchorline.settings import Settings
from anchorline.stream import codec

CONCURRENT = 5


@pytest.fixture
def base_url(settings: Settings, postgres: PostgresServer) -> Iterator[str]:
    on_postgres = replace(settings, database_url=postgres.new_database("idem"))
    with live_gateway(on_postgres) as url:
        yield url


def signed_fields(content: bytes) -> dict[str, str]:
    account = Account.create()
    document = {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": account.address,
    }
    signature = sign_eip191(document, "0x" + bytes(account.key).hex())
    return {"manifest": json.dumps(document), "signature": signature}


def at_once(base_url: str, bodies: list[dict[str, str]], content: bytes) -> list[httpx.Response]:
    """POST each body at the same moment, one thread each, with the same Idempotency-Key."""
    barrier = threading.Barrier(len(bodies))
    responses: list[Any] = [None] * len(bodies)

    def send(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            barrier.wait()
            responses[index] = client.post(
                "/v1/jobs",
                headers={"Idempotency-Key": "order-17"},
                data=bodies[index],
                files={"content": ("c.bin", content)},
            )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return responses


def published(settings: Settings) -> list[JobRequested]:
    """Every JobRequested on the topic, read for a while after the last one arrived."""
    messages = read_topic(
        settings, settings.topics.jobs_requested, until=lambda m: False, timeout=5
    )
    return [codec.decode(m.value(), JobRequested) for m in messages]  # type: ignore[attr-defined]


def test_concurrent_requests_with_one_key_publish_one_job(
    base_url: str, settings: Settings
) -> None:
    content = b"one job, however many times it is asked for"
    body = {"kind": "verify", **signed_fields(content)}
    responses = at_once(base_url, [body] * CONCURRENT, content)

    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(202) == 1, statuses
    assert set(statuses) <= {200, 202, 409}, statuses
    (accepted,) = [r.json() for r in responses if r.status_code == 202]
    assert all(r.json()["job_id"] == accepted["job_id"] for r in responses if r.status_code == 200)
    assert [job.job_id for job in published(settings)] == [accepted["job_id"]]


def test_concurrent_requests_with_one_key_and_other_bodies_publish_one_job(
    base_url: str, settings: Settings
) -> None:
    """The issue's case: five kinds under one key ran five verifications and a stray prove."""
    content = b"the same key, different requests"
    fields = signed_fields(content)
    bodies = [{"kind": kind, **fields} for kind in ("verify", "proof", "anchor", "proof", "anchor")]
    responses = at_once(base_url, bodies, content)

    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(202) == 1, statuses
    assert set(statuses) <= {200, 202, 409, 422}, statuses
    (winner,) = [
        (r.json(), body) for r, body in zip(responses, bodies, strict=True) if r.status_code == 202
    ]
    (job,) = published(settings)
    assert (job.job_id, job.kind) == (winner[0]["job_id"], winner[1]["kind"])
    for response, body in zip(responses, bodies, strict=True):
        if response.status_code == 422:
            assert body["kind"] != winner[1]["kind"]
        if response.status_code == 200:  # the winner's twin, after the winner was published
            assert (body, response.json()["job_id"]) == (winner[1], job.job_id)
    again = httpx.post(
        f"{base_url}/v1/jobs",
        headers={"Idempotency-Key": "order-17"},
        data=winner[1],
        files={"content": ("c.bin", content)},
        timeout=30,
    )
    assert (again.status_code, again.json()["job_id"]) == (200, job.job_id)
