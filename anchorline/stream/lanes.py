"""A stage's input topics, one a priority, and what the runner fetched from them.

Kafka cannot reorder a partition, so each priority has its own topic (a lane: topics.py). The
runner subscribes to every lane of its stage and takes, each time it polls, everything the
consumer has fetched: a high record never waits in librdkafka's queue (one queue for every
partition, in the order fetched) behind a flood of low ones. What it took waits here in a
WeightedPicker and leaves by the weights. A lane with more than `bound` records waiting stops
fetching (its partitions paused, which drops what librdkafka had prefetched of them: little, as
the runner drains that queue each time) until half of them were taken; that bounds memory.
Offsets stay right: a partition belongs to one lane, and a lane leaves first in, first out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from confluent_kafka import Consumer, Message, TopicPartition

from anchorline.events import Priority
from anchorline.stream.picking import DEFAULT_WEIGHTS, WeightedPicker
from anchorline.stream.topics import Place, place_of


class Lanes:
    """The fetched records of a stage's lanes, and which lanes may fetch more."""

    def __init__(
        self,
        lanes: Mapping[str, Priority],
        *,
        bound: int,
        weights: Mapping[Priority, int] = DEFAULT_WEIGHTS,
    ) -> None:
        self.priority_of = dict(lanes)
        self.only = next(iter(lanes.values())) if len(lanes) == 1 else None
        self.bound = bound
        self.picker: WeightedPicker[Message] = WeightedPicker(weights)
        self.paused: set[Place] = set()

    @property
    def topics(self) -> list[str]:
        return list(self.priority_of)

    def __len__(self) -> int:
        return len(self.picker)

    def add(self, messages: Iterable[Message]) -> None:
        for message in messages:
            priority = self.only or self.priority_of.get(message.topic() or "", Priority.NORMAL)
            self.picker.add(priority, message)

    def take(self, limit: int) -> list[Message]:
        return self.picker.take(limit)

    def throttle(self, consumer: Consumer) -> None:
        """Pause the partitions of each lane with more than `bound` waiting; resume a paused
        lane once half of that is left."""
        full = {p for p in self.picker.queues if self.picker.backlog(p) > self.bound}
        if not full and not self.paused:
            return  # the common case, no lane behind: not even the assignment is asked for
        low = {p for p in self.picker.queues if self.picker.backlog(p) <= self.bound // 2}
        owned = [(part.topic, part.partition) for part in consumer.assignment()]
        pause = {
            place
            for place in owned
            if place not in self.paused and self.priority_of.get(place[0]) in full
        }
        resume = {place for place in self.paused if self.priority_of.get(place[0]) in low}
        if pause:
            consumer.pause([TopicPartition(*place) for place in pause])
            self.paused |= pause
        if resume:
            consumer.resume([TopicPartition(*place) for place in resume])
            self.paused -= resume

    def forget(self, places: Iterable[Place]) -> list[TopicPartition]:
        """Drop what waits of these partitions (rewound, or no longer ours: fetched again from
        their committed offset, here or by their next owner); the paused ones among them, for
        the caller to resume, so that no partition stays paused across a rebalance."""
        gone = set(places)
        self.picker.drop(lambda message: place_of(message) in gone)
        paused = gone & self.paused
        self.paused -= paused
        return [TopicPartition(*place) for place in paused]
