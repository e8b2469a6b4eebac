"""/readyz asks the broker: a frozen one (connections open, nothing answered) is not ready."""

from __future__ import annotations

import os
import signal
import time
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
            wait_stopped(process.pid)
            assert not publisher.healthy()
            assert not publisher.brokers_down.is_set(), "librdkafka itself never says so"
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert publisher.healthy()
    finally:
        publisher.close()


def wait_stopped(pid: int, timeout: float = 10.0) -> None:
    """SIGSTOP is delivered asynchronously: on a busy machine a thread of the broker may still
    answer a request just after kill() returned. Wait until every thread is stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {thread_state(task) for task in Path(f"/proc/{pid}/task").iterdir()}
        if states <= {"T", "t"}:
            return
        time.sleep(0.01)
    raise AssertionError(f"broker {pid} did not stop: thread states {states}")


def thread_state(task: Path) -> str:
    try:
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:  # the thread ended meanwhile
        return "T"
