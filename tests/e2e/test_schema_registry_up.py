"""`anchorline up --schema-registry`: Apicurio Registry started with the system, and every
service on Confluent's framing through it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from confluent_kafka import Consumer
from system_under_test import System, local_settings, run_up, submit_signed, wait_terminal

from anchorline.events import new_id
from anchorline.infra.apicurio import CONFLUENT_API
from anchorline.infra.ports import free_port
from anchorline.infra.postgres import PostgresServer


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[System]:
    settings = local_settings(
        tmp_path_factory.mktemp("registry-system"),
        database_url=postgres.new_database("registry"),
        batch_max_wait_s=1.0,
        schema_registry_url=f"http://127.0.0.1:{free_port()}",
    )
    with run_up(settings, "--schema-registry") as running:
        yield running


def first_bytes(system: System, topic: str) -> set[int]:
    """The first byte of every record of a topic (0: Confluent's framing, 0xC3: single-object)."""
    consumer = Consumer(
        {
            "bootstrap.servers": system.settings.kafka_bootstrap,
            "group.id": f"e2e-{new_id()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    seen: set[int] = set()
    for _ in range(40):
        message = consumer.poll(0.5)
        if message is not None and message.error() is None and message.value():
            seen.add(message.value()[0])
    consumer.close()
    return seen


def test_an_anchor_job_goes_through_every_service_on_the_registry(system: System) -> None:
    content = b"registered " + new_id().encode()
    job_id = submit_signed(system, content)
    record = wait_terminal(system, job_id)
    assert record["state"] == "succeeded", record
    assert record["result"]["anchor"]["txHash"]

    topics = system.settings.topics
    registry = f"{system.settings.schema_registry_url}{CONFLUENT_API}"
    assert f"schema registry {registry}\n" in system.output
    subjects = httpx.get(f"{registry}/subjects", timeout=10).json()
    for topic in (topics.jobs_requested, topics.prove_requested, topics.anchor_requested):
        assert f"{topic}-value" in subjects
        assert first_bytes(system, topic) == {0}
    assert f"{topics.job_status}-value" in subjects
