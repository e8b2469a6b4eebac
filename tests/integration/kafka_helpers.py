"""Reading and writing real topics from tests."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer
from eth_account import Account

from anchorline.events import Event, JobKind, JobRequested, new_id, utcnow
from anchorline.proof.manifest import sign_eip191
from anchorline.settings import Settings
from anchorline.store.blobstore import FileBlobStore
from anchorline.stream import codec
from anchorline.stream.kafka import client_config
from anchorline.stream.topics import key_of


def publish(settings: Settings, *messages: Event | tuple[str, bytes]) -> None:
    """Produce events (or raw (topic, bytes)) and wait for the broker's acknowledgement."""
    producer = Producer(client_config(settings) | {"acks": "all"})
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
        client_config(settings)
        | {
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


def signed_job(settings: Settings, kind: JobKind, content: bytes) -> JobRequested:
    account = Account.create()
    uri, _ = FileBlobStore(settings.blobs).put_file(io.BytesIO(content))
    document = {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": account.address,
    }
    return JobRequested(
        job_id=new_id(),
        kind=kind,
        content_uri=uri,
        manifest=json.dumps(document),
        signature=sign_eip191(document, account.key.hex()),
        submitted_at=utcnow(),
    )


def wait_for(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll `check` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"condition not met within {timeout} s")
