"""Read a whole topic as it stands now, without a consumer group's committed offsets."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from anchorline.errors import IncompleteRead
from anchorline.settings import Settings
from anchorline.stream.access import READER_GROUPS
from anchorline.stream.kafka import client_config

STALL_S = 30.0
REFUSED = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)
NO_LEADER_YET = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)


def read_to_end(
    settings: Settings, topic: str, *, stall_s: float | None = None
) -> Iterator[Message]:
    """Every committed message of a topic, partition by partition in order, up to its end now.

    Raises IncompleteRead when the reader's position stops moving for `stall_s` (default
    STALL_S) before the end: a caller never takes part of a topic for the whole of it.
    """
    stall_s = STALL_S if stall_s is None else stall_s
    consumer = Consumer(
        client_config(settings)
        | {
            "group.id": f"{READER_GROUPS}{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        ends = _ends(consumer, topic, stall_s)
        if not ends:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        positions: dict[int, int] = {}
        moved = time.monotonic()
        # Transaction markers take offsets too, so the end is reached by position, not by message.
        while ends:
            if time.monotonic() - moved > stall_s:
                behind = {p: f"{positions.get(p, 0)}/{end}" for p, end in sorted(ends.items())}
                raise IncompleteRead(
                    f"could not read {topic} to its end: no progress for {stall_s:.0f} s "
                    f"(partition: position/end {behind})"
                )
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                error = message.error()
                if error is not None and error.code() in REFUSED:
                    raise KafkaException(error)  # waiting would not change the broker's mind
                end = ends.get(message.partition() or 0, 0)
                if message.error() is None and (message.offset() or 0) < end:
                    yield message
            for place in consumer.position([TopicPartition(topic, p) for p in ends]):
                if place.offset != positions.get(place.partition):
                    positions[place.partition] = place.offset
                    moved = time.monotonic()
                if place.offset >= ends[place.partition]:
                    del ends[place.partition]
    finally:
        consumer.close()


def _ends(consumer: Consumer, topic: str, stall_s: float) -> dict[int, int]:
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    if metadata.error is not None and metadata.error.code() in REFUSED:
        raise KafkaException(metadata.error)  # else it would read as an empty topic
    ends = {}
    for partition in metadata.partitions:
        low, high = watermarks(consumer, TopicPartition(topic, partition), stall_s)
        if high > low:
            ends[partition] = high
    return ends


def watermarks(consumer: Consumer, place: TopicPartition, stall_s: float) -> tuple[int, int]:
    """A partition's first and end offsets; waits up to `stall_s` for a leader being elected
    (as just after a broker restart)."""
    deadline = time.monotonic() + stall_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(place, timeout=10)
            return low, high
        except KafkaException as exc:
            if exc.args[0].code() not in NO_LEADER_YET or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
