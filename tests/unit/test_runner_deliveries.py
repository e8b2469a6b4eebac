"""StageRunner.flush with the delivery counts: records delivered before go one at a time, and
one delivered too often is dead-lettered unhandled. Kafka replaced by in-memory fakes."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import TopicPartition
from test_runner import SUBMITTED, FakeHandler

from anchorline.events import JobKind, JobRequested, StageState
from anchorline.settings import Settings
from anchorline.stream import codec
from anchorline.stream.deliveries import DeliveryCounter
from anchorline.stream.exactly_once import Outgoing
from anchorline.stream.kafka import consumer_config
from anchorline.stream.runner import StageRunner
from anchorline.stream.topics import Place, Topics
from anchorline.stream.watchdog import Watchdog

TOPIC = Topics("t").jobs_requested


class FakeMessage:
    def __init__(self, offset: int, partition: int = 0, job_id: str | None = None) -> None:
        self._offset = offset
        self._partition = partition
        self._job_id = job_id or f"job-{offset}"
        job = JobRequested(
            self._job_id, JobKind.VERIFY, "sha256:" + "0" * 64, "{}", "0x", SUBMITTED
        )
        self._value = codec.encode(job)

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._job_id.encode()

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)

    def headers(self) -> list[tuple[str, bytes]]:
        return []


class MemoryDeliveries:
    def __init__(self) -> None:
        self.counter = DeliveryCounter()

    def begin(self, heads: Mapping[Place, int]) -> dict[Place, int]:
        return {place: self.counter.begin(place, offset).count for place, offset in heads.items()}

    def retract(self, places: Iterable[Place]) -> None:
        for place in places:
            self.counter.retract(place)

    def forget(self, places: Iterable[Place]) -> None:
        pass


class MemoryLoop:
    """ExactlyOnce's contract: a refused commit rewinds its batch; a rewind seeks each partition
    to its first message there, and a later seek of a partition replaces an earlier one."""

    def __init__(self, *, refuse: int = 0) -> None:
        self.commits: list[tuple[list[int], list[Outgoing]]] = []
        self.positions: dict[int, int] = {}
        self.refuse = refuse
        self.committed_notes: dict[Place, str] = {}  # the offsets' metadata, as the broker keeps it

    def commit(
        self, batch: list[Any], outgoing: list[Outgoing], notes: Mapping[Place, str] | None = None
    ) -> bool:
        if self.refuse:
            self.refuse -= 1
            self.rewind(batch)
            return False
        self.commits.append(([m.offset() for m in batch], outgoing))
        self.committed_notes.update(notes or {})
        return True

    def notes(self, places: Iterable[Place]) -> dict[Place, str]:
        return {place: self.committed_notes.get(place, "") for place in places}

    def rewind(self, batch: list[Any]) -> None:
        first: dict[int, int] = {}
        for message in batch:
            first[message.partition()] = min(
                first.get(message.partition(), message.offset()), message.offset()
            )
        self.positions.update(first)


class NoProducer:
    def produce(self, *args: Any, **kwargs: Any) -> None:
        pass

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def runner(handler: FakeHandler, loop: MemoryLoop) -> tuple[StageRunner, MemoryDeliveries]:
    stage = StageRunner(
        handler, Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="t"), service="verifier"
    )
    stage.loop.close()
    deliveries = MemoryDeliveries()
    stage.loop = loop  # type: ignore[assignment]
    stage.status_producer = NoProducer()  # type: ignore[assignment]
    stage.deliveries = deliveries  # type: ignore[assignment]
    return stage, deliveries


def flush(stage: StageRunner, *offsets: int) -> None:
    stage.pending.add([FakeMessage(offset) for offset in offsets])  # type: ignore[misc]
    stage.flush()


def test_a_first_delivery_is_one_batch_in_one_commit() -> None:
    handler, loop = FakeHandler(batched=True), MemoryLoop()
    stage, _ = runner(handler, loop)
    flush(stage, 10, 11, 12)
    assert handler.calls == [["job-10", "job-11", "job-12"]]
    assert [offsets for offsets, _ in loop.commits] == [[10, 11, 12]]


def test_a_batch_delivered_before_goes_one_record_and_one_commit_at_a_time() -> None:
    handler, loop = FakeHandler(batched=True), MemoryLoop()
    stage, deliveries = runner(handler, loop)
    deliveries.counter.begin((TOPIC, 0), 10)  # the process that had it died
    flush(stage, 10, 11, 12)
    assert handler.calls == [["job-10"], ["job-11"], ["job-12"]]
    assert [offsets for offsets, _ in loop.commits] == [[10], [11], [12]]


def test_a_record_delivered_past_the_limit_is_dead_lettered_unhandled() -> None:
    handler, loop = FakeHandler(batched=True), MemoryLoop()
    stage, deliveries = runner(handler, loop)
    for _ in range(3):
        deliveries.counter.begin((TOPIC, 0), 10)
    flush(stage, 10, 11)
    assert handler.calls == [["job-11"]]
    (letter, dead) = loop.commits[0][1]
    assert letter.topic == f"{TOPIC}.dlq"
    reason = dict(letter.headers)["kafka_dlt-exception-message"]
    assert isinstance(reason, bytes) and b"delivered 3 times and never committed" in reason
    assert codec.decode_any(dead.value).state is StageState.DEAD  # type: ignore[union-attr]


def test_a_rolled_back_commit_is_not_counted_as_a_death() -> None:
    handler, loop = FakeHandler(batched=True), MemoryLoop(refuse=1)
    stage, _ = runner(handler, loop)
    flush(stage, 10, 11)
    assert loop.commits == []
    flush(stage, 10, 11)  # polled again after the rewind, in the same process
    assert handler.calls == [["job-10", "job-11"]] * 2
    assert [offsets for offsets, _ in loop.commits] == [[10, 11]]


def test_a_record_rolled_back_alone_is_polled_again_before_the_rest() -> None:
    handler, loop = FakeHandler(batched=True), MemoryLoop(refuse=1)
    stage, deliveries = runner(handler, loop)
    deliveries.counter.begin((TOPIC, 0), 10)  # delivered before: one record a commit
    flush(stage, 10, 11, 12)
    assert handler.calls == [["job-10"]]
    assert loop.commits == []
    assert loop.positions == {0: 10}, "the consumer must fetch the rolled-back record again"
    assert len(stage.pending) == 0, "what waited of the rewound partition comes again"


def test_a_rolled_back_batch_rewinds_the_records_it_did_not_reach() -> None:
    handler, loop = FakeHandler(batched=True), MemoryLoop(refuse=1)
    stage, deliveries = runner(handler, loop)
    deliveries.counter.begin((TOPIC, 1), 20)  # partition 1 delivered before, partition 0 not
    stage.pending.add([FakeMessage(10), FakeMessage(20, 1), FakeMessage(21, 1)])  # type: ignore[list-item]
    stage.flush()
    assert handler.calls == [["job-10"]]
    assert loop.positions == {0: 10, 1: 20}


def test_a_copy_reaching_the_partitions_next_owner_is_not_handled_again() -> None:
    """The first copy committed by one process, its resend polled by the process that took the
    partition over: the second knows it from the notes committed with the offset."""
    loop = MemoryLoop()
    first, second = FakeHandler(batched=True), FakeHandler(batched=True)
    before, _ = runner(first, loop)
    before.pending.add([FakeMessage(59, job_id="sent-twice")])  # type: ignore[list-item]
    before.flush()
    after, _ = runner(second, loop)  # a new process: nothing of the first in its memory
    after.pending.add([FakeMessage(60, job_id="sent-twice"), FakeMessage(61)])  # type: ignore[list-item]
    after.flush()
    assert first.calls == [["sent-twice"]]
    assert second.calls == [["job-61"]]
    assert [offsets for offsets, _ in loop.commits] == [[59], [60, 61]]


def test_a_partition_given_back_is_recalled_from_the_broker_not_from_memory() -> None:
    """Another process may have committed records of it meanwhile."""
    loop = MemoryLoop()
    handler = FakeHandler(batched=True)
    stage, _ = runner(handler, loop)
    flush(stage, 10)
    stage._on_revoke(None, [TopicPartition(TOPIC, 0)])  # type: ignore[arg-type]
    other, _ = runner(FakeHandler(batched=True), loop)
    other.pending.add([FakeMessage(11, job_id="elsewhere")])  # type: ignore[list-item]
    other.flush()
    stage.pending.add([FakeMessage(12, job_id="elsewhere"), FakeMessage(13)])  # type: ignore[list-item]
    stage.flush()  # the partition is back
    assert handler.calls == [["job-10"], ["job-13"]]


class SlowHandler(FakeHandler):
    def handle(self, events: Any, report: Any) -> Any:
        time.sleep(1.0)
        return super().handle(events, report)


def test_a_batch_handled_past_the_deadline_ends_the_process() -> None:
    stage, _ = runner(SlowHandler(batched=True), MemoryLoop())
    expired: list[str] = []
    stage.handling = Watchdog(0.2, on_expiry=lambda what, waited: expired.append(what))
    flush(stage, 10)
    stage.handling.stop()
    assert expired == ["handling a batch"]
    for deadline_s in (240.0, 900.0):
        settings = Settings(handling_deadline_s=deadline_s)
        poll_interval_s = consumer_config(settings, group_id="g")["max.poll.interval.ms"] / 1000
        assert poll_interval_s > deadline_s, "or the consumer leaves its group first"


def test_a_stage_may_take_fewer_records_a_poll_than_the_setting() -> None:
    """The chain-writer takes one root a transaction: a root waits for its confirmations, and a
    poll batch of 32 would put all those waits under one handling deadline."""
    settings = Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="t", handling_deadline_s=600)
    for poll_batch, expected in ((None, settings.poll_batch), (1, 1)):
        stage = StageRunner(
            FakeHandler(batched=False), settings, service="chain-writer", poll_batch=poll_batch
        )
        stage.loop.close()
        stage.deliveries.close()
        assert stage.max_batch == expected
        assert stage.handling.deadline_s == 600


def test_the_notifier_announces_a_cancelled_job_where_a_pipeline_stage_skips_it() -> None:
    from anchorline.events import NotifyRequested, Stage

    class Notifier(FakeHandler):
        stage = Stage.NOTIFY
        consumes = NotifyRequested

    settings = Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="t")
    for handler, skips in ((FakeHandler(), True), (Notifier(), False)):
        stage = StageRunner(handler, settings, service="s")
        stage.loop.close()
        stage.deliveries.close()
        if stage.cancellations is not None:
            stage.cancellations.add("job-1", 0)
        assert stage.processor.cancelled("job-1", 0) is skips
