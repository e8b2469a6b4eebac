"""Lanes: what a stage fetched from its priority topics, and which of them may fetch more.
The consumer is an in-memory stand-in: this is about the policy, not about Kafka."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from anchorline.events import Priority, Stage
from anchorline.stream.lanes import Lanes
from anchorline.stream.topics import Topics

TOPICS = Topics("t")
LANES = TOPICS.lanes(Stage.VERIFY)
HIGH, NORMAL, LOW = (TOPICS.lane(TOPICS.jobs_requested, p) for p in Priority)


class Record:
    def __init__(self, topic: str, offset: int, partition: int = 0) -> None:
        self._where = (topic, partition, offset)

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]


class Consumer:
    def __init__(self, partitions: int = 2) -> None:
        self.owned = [TopicPartition(t, p) for t in LANES for p in range(partitions)]
        self.paused: set[tuple[str, int]] = set()
        self.asked = 0

    def assignment(self) -> list[TopicPartition]:
        self.asked += 1
        return self.owned

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(p.topic, p.partition) for p in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(p.topic, p.partition) for p in partitions}


def records(topic: str, count: int, *, start: int = 0) -> list[Record]:
    return [Record(topic, offset) for offset in range(start, start + count)]


def test_a_lane_past_its_bound_is_paused_and_resumed_at_half() -> None:
    lanes, consumer = Lanes(LANES, bound=10), Consumer()
    lanes.add(records(LOW, 11) + records(NORMAL, 3))
    lanes.throttle(consumer)  # type: ignore[arg-type]
    assert consumer.paused == {(LOW, 0), (LOW, 1)}, "only the flooded lane stops fetching"
    lanes.take(5)  # 3 normal, 2 low: 9 low left, more than half
    lanes.throttle(consumer)  # type: ignore[arg-type]
    assert consumer.paused == {(LOW, 0), (LOW, 1)}
    lanes.take(4)
    lanes.throttle(consumer)  # type: ignore[arg-type]
    assert consumer.paused == set()


def test_with_no_lane_behind_the_consumer_is_not_even_asked() -> None:
    lanes, consumer = Lanes(LANES, bound=10), Consumer()
    lanes.add(records(NORMAL, 10))
    lanes.throttle(consumer)  # type: ignore[arg-type]
    assert consumer.asked == 0


def test_a_high_record_fetched_behind_a_flood_of_low_ones_is_taken_first() -> None:
    lanes = Lanes(LANES, bound=1000)
    lanes.add([*records(LOW, 500), Record(HIGH, 0)])
    assert Record(HIGH, 0).offset() in [r.offset() for r in lanes.take(5) if r.topic() == HIGH]


def test_forgetting_partitions_drops_what_waits_of_them_and_hands_back_the_paused() -> None:
    lanes, consumer = Lanes(LANES, bound=2), Consumer()
    lanes.add([*records(LOW, 4), Record(LOW, 0, partition=1), Record(HIGH, 0)])
    lanes.throttle(consumer)  # type: ignore[arg-type]
    resumed = lanes.forget([(LOW, 0)])
    assert [(p.topic, p.partition) for p in resumed] == [(LOW, 0)]
    assert sorted((r.topic(), r.partition()) for r in lanes.take(10)) == [(HIGH, 0), (LOW, 1)]
    assert lanes.paused == {(LOW, 1)}, "the other partition stays as it was"


def test_a_stage_with_one_topic_takes_everything_as_it_came() -> None:
    lanes = Lanes({"t.notify.requested": Priority.NORMAL}, bound=10)
    lanes.add(records("t.notify.requested", 5))
    assert [r.offset() for r in lanes.take(10)] == [0, 1, 2, 3, 4]
