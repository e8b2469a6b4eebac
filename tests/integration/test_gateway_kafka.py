"""The gateway's publisher on the real broker: acknowledged writes, and a quick 503 without one."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from kafka_helpers import read_topic

from anchorline.events import JobKind, JobRequested, new_id, utcnow
from anchorline.infra.ports import free_port
from anchorline.settings import Settings
from anchorline.stream import codec
from anchorline_gateway.publisher import KafkaPublisher, Unavailable


def request() -> JobRequested:
    return JobRequested(new_id(), JobKind.VERIFY, "sha256:" + "00" * 32, "{}", "0x", utcnow())


def test_publish_returns_after_the_broker_has_the_message(settings: Settings) -> None:
    publisher = KafkaPublisher(settings)
    job = request()
    try:
        asyncio.run(publisher.publish([job]))
    finally:
        publisher.close()
    messages = read_topic(settings, settings.topics.jobs_requested, until=lambda m: len(m) >= 1)
    assert codec.decode(messages[0].value(), JobRequested) == job  # type: ignore[attr-defined]


def test_publish_without_a_broker_fails_fast(settings: Settings) -> None:
    nowhere = replace(settings, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    publisher = KafkaPublisher(nowhere, timeout_s=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            asyncio.run(publisher.publish([request()]))
        assert time.monotonic() - started < 6.0
        # Once librdkafka has said every broker is down, a request is refused at once.
        deadline = time.monotonic() + 10
        while not publisher.brokers_down.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert publisher.brokers_down.is_set()
        started = time.monotonic()
        with pytest.raises(Unavailable, match="unreachable"):
            asyncio.run(publisher.publish([request()]))
        assert time.monotonic() - started < 1.5
    finally:
        publisher.close()


def test_publisher_recovers_when_the_broker_is_back(settings: Settings) -> None:
    publisher = KafkaPublisher(settings)
    try:
        publisher.brokers_down.set()  # as if librdkafka had reported every broker down
        asyncio.run(publisher.publish([request()]))
        assert not publisher.brokers_down.is_set()
    finally:
        publisher.close()


def test_readiness_comes_back_without_a_request_once_the_broker_answers(settings: Settings) -> None:
    publisher = KafkaPublisher(settings)
    try:
        publisher.brokers_down.set()  # as a login new to the broker does at start-up
        # Each check waits up to 2 s for the broker; a new client's first answer can take
        # longer on a busy machine (seen at a load average of 20), so a few checks may be asked.
        deadline = time.monotonic() + 30
        while not publisher.healthy() and time.monotonic() < deadline:
            pass
        assert not publisher.brokers_down.is_set()
    finally:
        publisher.close()
