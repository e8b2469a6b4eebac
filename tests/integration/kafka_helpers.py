"""Reading and writing real topics from tests."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, Producer

from anchorline import codec
from anchorline.events import Event
from anchorline.settings import Settings
from anchorline.topics import key_of


def publish(settings: Settings, *messages: Event | tuple[str, bytes]) -> None:
    """Produce events (or raw (topic, bytes)) and wait for the broker's acknowledgement."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    for message in messages:
        if isinstance(message, tuple):
            producer.produce(message[0], value=message[1])
        else:
            producer.produce(
                settings.topics.for_event(message),
                key=key_of(message).encode(),
                value=codec.encode(message),
            )
    assert producer.flush(30) == 0


def read_topic(
    settings: Settings, topic: str, *, until: Callable[[list[object]], bool], timeout: float = 60.0
) -> list[object]:
    """Committed messages of a topic, read from the start until `until(messages)` holds."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"reader-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[object] = []
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not deadline.is_set() and not until(messages):
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        timer.cancel()
        consumer.close()
    return messages
