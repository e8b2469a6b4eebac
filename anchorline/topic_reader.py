"""Read a whole topic as it stands now, without a consumer group's committed offsets."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from anchorline.settings import Settings

IDLE_LIMIT_S = 10.0


def read_to_end(settings: Settings, topic: str) -> Iterator[Message]:
    """Every committed message of a topic, partition by partition in order, up to its end now."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"anchorline-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        ends = _ends(consumer, topic)
        if not ends:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        idle_since = time.monotonic()
        # Transaction markers take offsets too, so the end is reached by position, not by message.
        while ends and time.monotonic() - idle_since < IDLE_LIMIT_S:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                if message.error() is None:
                    idle_since = time.monotonic()
                    if (message.offset() or 0) < ends.get(message.partition() or 0, 0):
                        yield message
            for place in consumer.position([TopicPartition(topic, p) for p in ends]):
                if place.offset >= ends[place.partition]:
                    del ends[place.partition]
    finally:
        consumer.close()


def _ends(consumer: Consumer, topic: str) -> dict[int, int]:
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    ends = {}
    for partition in metadata.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high > low:
            ends[partition] = high
    return ends
