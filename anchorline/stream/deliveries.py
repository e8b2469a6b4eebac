"""Deliveries: how often the records at each partition's head reached a stage uncommitted.

A record that ends the process handling it (a segfault, the OOM killer, `os._exit` in a
library) is delivered again to the process that replaces it, and would end that one too,
for good. So before a stage handles a batch it writes, and flushes, where each partition's
part of the batch starts and how many times that start was delivered without a commit,
to a compacted topic keyed by partition. A start delivered before is handled one record
at a time, each committed alone, so that the record that ends the process is the only one
counted again; past the limit it is dead-lettered instead of handled.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaException, Producer

from anchorline.errors import BadInput, IncompleteRead
from anchorline.settings import Settings
from anchorline.stream.kafka import producer_config
from anchorline.stream.topic_reader import read_to_end
from anchorline.stream.topics import Place
from anchorline.untrusted import parse_json

log = logging.getLogger(__name__)

FLUSH_S = 10.0


@dataclass(frozen=True)
class Delivery:
    """The record at `offset` heads a partition's batch for the `count`th time uncommitted."""

    offset: int
    count: int


class DeliveryCounter:
    """Counts deliveries of each partition's head; the logic, without Kafka."""

    def __init__(self) -> None:
        self.heads: dict[Place, Delivery] = {}

    def begin(self, place: Place, offset: int) -> Delivery:
        """Another delivery of the records from `offset` on: counted again if the last one
        started at the same offset (it was not committed), else the first."""
        last = self.heads.get(place)
        count = last.count + 1 if last is not None and last.offset == offset else 1
        self.heads[place] = Delivery(offset, count)
        return self.heads[place]

    def retract(self, place: Place) -> None:
        """Undo the last count: its batch was rolled back in a process that lives on, so its
        next delivery is not one that a death caused."""
        last = self.heads.get(place)
        if last is not None:
            self.heads[place] = Delivery(last.offset, last.count - 1)


class DeliveryLog:
    """The counter of one stage's input, kept in the compacted deliveries topic."""

    def __init__(self, settings: Settings, *, sources: Collection[str]) -> None:
        self.settings = settings
        self.sources = frozenset(sources)  # the stage's input topics, one a priority
        self.topic = settings.topics.deliveries
        self.producer = Producer(producer_config(settings))
        self.counter = DeliveryCounter()
        self.loaded: set[Place] = set()

    def begin(self, heads: Mapping[Place, int]) -> dict[Place, int]:
        """Count a delivery of each partition's records from the given offset on, durably
        before they are handled; returns each partition's count."""
        self._load(set(heads))
        counts: dict[Place, int] = {}
        for place, offset in heads.items():
            delivery = self.counter.begin(place, offset)
            counts[place] = delivery.count
            self._write(place, delivery)
        # Counting is a defence, not a condition of work: a broker that does not take the
        # counts now (away, or the topic not created yet) must not stop the stage.
        if self.producer.flush(FLUSH_S):
            log.warning("deliveries not written within %.0f s; handling the batch anyway", FLUSH_S)
        return counts

    def _write(self, place: Place, delivery: Delivery) -> None:
        value = f'{{"offset":{delivery.offset},"count":{delivery.count}}}'.encode()
        try:
            self.producer.produce(self.topic, key=_key(place), value=value)
        except (KafkaException, BufferError) as exc:
            log.warning("cannot count a delivery in %s (%s); handling it anyway", self.topic, exc)

    def retract(self, places: Iterable[Place]) -> None:
        """The batch from these heads was rolled back, not ended by a death: counted once."""
        for place in places:
            self.counter.retract(place)

    def forget(self, places: Iterable[Place]) -> None:
        """Partitions no longer ours: their counts are read again if they come back."""
        self.loaded -= set(places)

    def close(self) -> None:
        self.producer.flush(FLUSH_S)

    def _load(self, places: set[Place]) -> None:
        if places <= self.loaded:
            return
        try:
            heads = self._read()
        except (IncompleteRead, KafkaException) as exc:
            log.warning("cannot read %s (%s); counting from memory for now", self.topic, exc)
            return
        for place in places:
            if place in heads:
                self.counter.heads[place] = heads[place]
            else:
                self.counter.heads.pop(place, None)
        self.loaded |= places

    def _read(self) -> dict[Place, Delivery]:
        heads: dict[Place, Delivery] = {}
        for message in read_to_end(self.settings, self.topic):
            place = _place(message.key())  # type: ignore[attr-defined]
            delivery = _delivery(message.value())  # type: ignore[attr-defined]
            if place is not None and place[0] in self.sources:
                if delivery is None:
                    heads.pop(place, None)
                else:
                    heads[place] = delivery
        return heads


def _key(place: Place) -> bytes:
    return f"{place[0]}:{place[1]}".encode()


def _place(key: bytes | None) -> Place | None:
    topic, _, partition = (key or b"").decode("utf-8", "replace").rpartition(":")
    return (topic, int(partition)) if topic and partition.isdigit() else None


def _delivery(value: bytes | None) -> Delivery | None:
    """A record of the topic, which anyone who may write it could have forged: read with
    bounds, and ignored if it is not ours."""
    try:
        raw = parse_json(value or b"", what="delivery", max_bytes=256, max_depth=1)
    except BadInput:
        return None
    if not isinstance(raw, dict):
        return None
    offset, count = raw.get("offset"), raw.get("count")
    if type(offset) is not int or type(count) is not int or offset < 0 or not 0 < count < 1000:
        return None
    return Delivery(offset, count)
