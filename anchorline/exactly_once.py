"""Consume, produce and commit in one Kafka transaction: the exactly-once core of every loop."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from anchorline.headers import Header
from anchorline.kafka import consumer_config, producer_config, transactional_id
from anchorline.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[Header] = field(default_factory=list)


class ExactlyOnce:
    """One consumer and one transactional producer: a batch's output commits with its offsets."""

    def __init__(self, settings: Settings, *, group_id: str, service: str) -> None:
        self.consumer = Consumer(consumer_config(settings, group_id=group_id))
        self.producer = Producer(
            producer_config(settings, transactional_id=transactional_id(service))
        )

    def start(self, topics: list[str], **callbacks: Any) -> None:
        self.producer.init_transactions(30)
        self.consumer.subscribe(topics, **callbacks)

    def poll(self, *, limit: int, timeout: float) -> list[Message]:
        messages = []
        for message in self.consumer.consume(num_messages=limit, timeout=timeout):
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
        return messages

    def commit(self, batch: list[Message], outgoing: list[Outgoing]) -> bool:
        """Produce `outgoing` and commit `batch`'s offsets atomically; False if rolled back."""
        try:
            self.producer.begin_transaction()
            for message in outgoing:
                self.producer.produce(
                    message.topic, key=message.key, value=message.value, headers=message.headers
                )
            self.producer.send_offsets_to_transaction(
                _next_offsets(batch), self.consumer.consumer_group_metadata(), 30
            )
            self.producer.commit_transaction(60)
            return True
        except KafkaException as exc:
            error = exc.args[0]
            if not error.txn_requires_abort():
                raise
            log.warning("transaction aborted (%s); rewinding the batch", error)
            self.producer.abort_transaction(30)
            self._rewind(batch)
            return False

    def _rewind(self, batch: list[Message]) -> None:
        first: dict[tuple[str, int], int] = {}
        for message in batch:
            place = (message.topic() or "", message.partition() or 0)
            first[place] = min(first.get(place, message.offset() or 0), message.offset() or 0)
        for (topic, partition), offset in first.items():
            self.consumer.seek(TopicPartition(topic, partition, offset))

    def close(self) -> None:
        self.consumer.close()


def _next_offsets(batch: list[Message]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for message in batch:
        place = (message.topic() or "", message.partition() or 0)
        last[place] = max(last.get(place, -1), message.offset() or 0)
    return [
        TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in last.items()
    ]
