"""Reading a whole topic on the real broker, and saying so when it cannot be read to its end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from kafka_helpers import wait_for

from anchorline.cli.main import main
from anchorline.errors import IncompleteRead
from anchorline.infra.kafka import KafkaBroker
from anchorline.infra.ports import free_ports
from anchorline.settings import Settings
from anchorline.stream import topic_reader
from anchorline.stream.kafka import ensure_topics, producer_config
from anchorline.stream.topic_reader import read_to_end


@pytest.fixture
def own_broker(kafka: KafkaBroker, tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test's own, which it may stop (`kafka` first: its jars are checked)."""
    port, controller_port = free_ports(2)
    with KafkaBroker(
        state_dir=tmp_path / "kafka", port=port, controller_port=controller_port
    ) as broker:
        yield broker


def on(broker: KafkaBroker, tmp_path: Path) -> Settings:
    settings = Settings(state_dir=tmp_path, kafka_bootstrap=broker.bootstrap, partitions=2)
    ensure_topics(settings)
    return settings


def produce(settings: Settings, topic: str, *values: bytes) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for value in values:
        producer.produce(topic, key=b"k", value=value, partition=0)
    assert producer.flush(30) == 0


def test_a_reader_stops_at_the_last_committed_message_not_at_an_open_transaction(
    settings: Settings,
) -> None:
    topic = settings.topics.dead_letter(settings.topics.jobs_requested)
    produce(settings, topic, b"before")
    held = Producer(producer_config(settings, transactional_id=f"held-{uuid.uuid4()}"))
    held.init_transactions(30)
    held.begin_transaction()
    held.produce(topic, key=b"k", value=b"in the transaction", partition=0)
    assert held.flush(30) == 0
    produce(settings, topic, b"after")

    assert [m.value() for m in read_to_end(settings, topic, stall_s=5)] == [b"before"]
    held.commit_transaction(30)
    # The commit markers land on the partition just after commit_transaction returns.
    everything = [b"before", b"in the transaction", b"after"]
    read = wait_for(
        lambda: (
            values
            if len(values := [m.value() for m in read_to_end(settings, topic, stall_s=5)]) == 3
            else None
        ),
        timeout=30,
    )
    assert read == everything


def test_a_reader_that_loses_the_broker_mid_read_says_so_instead_of_returning_part(
    own_broker: KafkaBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = on(own_broker, tmp_path)
    topic = settings.topics.job_status
    produce(settings, topic, b"one", b"two", b"three")
    real_ends = topic_reader._ends

    def ends_then_broker_gone(consumer: Consumer, topic: str, stall_s: float) -> dict[int, int]:
        ends = real_ends(consumer, topic, stall_s)
        own_broker.stop()
        return ends

    monkeypatch.setattr(topic_reader, "_ends", ends_then_broker_gone)
    began = time.monotonic()
    with pytest.raises(IncompleteRead, match=f"could not read {topic} to its end") as raised:
        list(read_to_end(settings, topic, stall_s=2))
    assert time.monotonic() - began < 30
    assert "no progress for 2 s" in str(raised.value)

    monkeypatch.setattr(topic_reader, "_ends", real_ends)
    own_broker.start()
    assert [m.value() for m in read_to_end(settings, topic)] == [b"one", b"two", b"three"]


def test_dlq_list_with_the_broker_down_fails_with_a_reason(
    own_broker: KafkaBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = on(own_broker, tmp_path)
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["dlq", "list"]) == 0
    capsys.readouterr()

    own_broker.stop()
    assert main(["dlq", "list"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"anchorline: Kafka at {own_broker.bootstrap}: "), error
