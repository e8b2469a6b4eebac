"""/readyz asks the broker: a frozen one (connections open, nothing answered) is not ready."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from anchorline.infra.kafka import KafkaBroker
from anchorline.infra.ports import free_ports
from anchorline.settings import Settings
from anchorline.stream.kafka import ensure_topics
from anchorline_gateway.publisher import KafkaPublisher


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test alone: it is frozen."""
    port, controller = free_ports(2)
    with KafkaBroker(
        state_dir=tmp_path / "kafka", port=port, controller_port=controller, partitions=1
    ) as broker:
        yield broker


def test_a_frozen_broker_makes_the_gateway_not_ready_and_a_thawed_one_ready(
    own_broker: KafkaBroker, tmp_path: Path
) -> None:
    settings = Settings(state_dir=tmp_path, kafka_bootstrap=own_broker.bootstrap, partitions=1)
    ensure_topics(settings)
    publisher = KafkaPublisher(settings)
    process = own_broker._process
    assert process is not None
    try:
        assert publisher.healthy()
        os.kill(process.pid, signal.SIGSTOP)
        try:
            assert not publisher.healthy()
            assert not publisher.brokers_down.is_set(), "librdkafka itself never says so"
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert publisher.healthy()
    finally:
        publisher.close()
