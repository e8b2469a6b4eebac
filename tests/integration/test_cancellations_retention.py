"""The cancellations topic on the real broker: deleted past its retention besides compacted, and
a stage that reads it from the start keeps only what is younger than that."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from anchorline.settings import Settings
from anchorline.stream.cancellations import Cancellations, cancel_record
from anchorline.stream.kafka import client_config, ensure_topics, producer_config

TIMEOUT_S = 30.0


def test_the_topic_forgets_past_the_retention(settings: Settings) -> None:
    admin = AdminClient(client_config(settings))
    resource = ConfigResource(ConfigResource.Type.TOPIC, settings.topics.cancellations)
    config = admin.describe_configs([resource], request_timeout=TIMEOUT_S)[resource].result()
    assert config["cleanup.policy"].value == "compact,delete"
    assert config["retention.ms"].value == str(int(settings.cancellation_retention_s * 1000))


def test_a_stage_keeps_only_the_cancellations_younger_than_the_retention(
    settings: Settings, running: Callable[..., Any]
) -> None:
    settings = replace(settings, topic_prefix=settings.topic_prefix + "r")
    settings = replace(settings, cancellation_retention_s=3600.0)
    ensure_topics(settings)
    producer = Producer(producer_config(settings))
    now = datetime.now(UTC)
    for job_id, age_s in (("old-job", 7200), ("new-job", 60)):
        key, value = cancel_record(job_id, generation=0, at=now)
        producer.produce(  # one partition, the old one first: read before the new one
            settings.topics.cancellations,
            key=key,
            value=value,
            partition=0,
            timestamp=int((time.time() - age_s) * 1000),
        )
    assert producer.flush(TIMEOUT_S) == 0
    cancellations = Cancellations(settings)
    running(cancellations.run)
    deadline = time.monotonic() + TIMEOUT_S
    while not cancellations.is_cancelled("new-job", 0):
        assert time.monotonic() < deadline, "the recent cancellation was never read"
        time.sleep(0.1)
    assert not cancellations.is_cancelled("old-job", 0)
    assert set(cancellations.runs) == {"new-job"}
