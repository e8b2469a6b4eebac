"""ExactlyOnce on the real broker: a transaction the coordinator gave up on is run again, and a
producer replaced after an abort can write nothing more."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaException, Message, Producer, TopicPartition
from kafka_helpers import read_topic

from anchorline.settings import Settings
from anchorline.stream import kafka as kafka_config
from anchorline.stream.exactly_once import ExactlyOnce, Outgoing

TIMEOUT_MS = 2_000  # the broker looks for timed-out transactions every 2 s
POLL_TIMEOUT_S = 30.0


class SlowOutgoing(list[Outgoing]):
    """Output that takes longer to produce than its transaction may stay open, as when the
    broker goes away mid-commit."""

    def __init__(self, items: list[Outgoing], pause_s: float) -> None:
        super().__init__(items)
        self.pause_s = pause_s

    def __iter__(self) -> Iterator[Outgoing]:
        yield from super().__iter__()
        time.sleep(self.pause_s)


def poll_all(loop: ExactlyOnce, count: int) -> list[Message]:
    batch: list[Message] = []
    deadline = time.monotonic() + 30
    while len(batch) < count and time.monotonic() < deadline:
        batch += loop.poll(limit=count - len(batch), timeout=0.5)
    return batch


def test_a_fenced_producer_is_replaced_and_the_batch_runs_again(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka_config, "TRANSACTION_TIMEOUT_MS", TIMEOUT_MS)
    source, target = settings.topics.jobs_requested, settings.topics.job_status
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for n in range(3):
        producer.produce(source, key=b"one key", value=f"in {n}".encode())
    assert producer.flush(30) == 0
    loop = ExactlyOnce(settings, group_id=f"g-{uuid.uuid4()}", service="test")
    try:
        loop.start([source])
        batch = poll_all(loop, 3)
        assert [m.value() for m in batch] == [b"in 0", b"in 1", b"in 2"]
        fenced = loop.producer

        slow = SlowOutgoing([Outgoing(target, b"k", b"first try")], TIMEOUT_MS / 1000 + 4)
        assert loop.commit(batch, slow) is False, "a fenced transaction must not count as done"
        assert loop.producer is not fenced

        again = poll_all(loop, 3)
        assert [m.value() for m in again] == [b"in 0", b"in 1", b"in 2"]
        assert loop.commit(again, [Outgoing(target, b"k", b"second try")]) is True

        partition = again[0].partition()
        committed = loop.consumer.committed([TopicPartition(source, partition)], timeout=10)
        assert committed[0].offset == again[-1].offset() + 1
    finally:
        loop.close()
    # Read for a while: the aborted output must never show, the committed one exactly once.
    out = read_topic(settings, target, until=lambda m: False, timeout=8)
    assert [m.value() for m in out] == [b"second try"]  # type: ignore[attr-defined]


def test_a_producer_replaced_after_an_abort_is_fenced_from_the_next_transaction(
    settings: Settings,
) -> None:
    """What the fix of a success committed twice (the fault suite's leader kill) rests on: a
    write of the aborted transaction still on its way must not join the next one. The new
    producer has the same transactional id, so a new epoch, and the broker refuses the old."""
    target = settings.topics.job_status
    loop = ExactlyOnce(settings, group_id=f"g-{uuid.uuid4()}", service="test")
    try:
        loop.start([settings.topics.jobs_requested])
        old = loop.producer
        old.begin_transaction()
        old.produce(target, key=b"k", value=b"aborted")
        old.abort_transaction(30)
        loop._replace_producer()

        old.begin_transaction()
        old.produce(target, key=b"k", value=b"late")
        with pytest.raises(KafkaException) as refused:
            old.commit_transaction(30)
        assert refused.value.args[0].fatal(), refused.value

        loop.producer.begin_transaction()
        loop.producer.produce(target, key=b"k", value=b"next")
        loop.producer.commit_transaction(30)
    finally:
        loop.close()
    out = read_topic(settings, target, until=lambda m: False, timeout=8)
    assert [m.value() for m in out] == [b"next"]  # type: ignore[attr-defined]


def test_poll_returns_what_has_arrived_without_waiting_for_a_full_batch(
    settings: Settings,
) -> None:
    source = settings.topics.jobs_requested
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for n in range(2):
        producer.produce(source, key=b"same key", value=f"only {n}".encode())
    assert producer.flush(30) == 0
    loop = ExactlyOnce(settings, group_id=f"g-{uuid.uuid4()}", service="test")
    try:
        loop.start([source])
        taken: list[Message] = []
        started = time.monotonic()
        while len(taken) < 2 and time.monotonic() - started < 60:
            taken += loop.poll(limit=500, timeout=POLL_TIMEOUT_S)
        waited = time.monotonic() - started
    finally:
        loop.close()
    assert [m.value() for m in taken] == [b"only 0", b"only 1"]
    # consume(500, timeout) returned only once 500 had come or the timeout was over.
    assert waited < POLL_TIMEOUT_S
