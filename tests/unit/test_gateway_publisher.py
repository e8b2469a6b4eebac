"""The Kafka publisher turns librdkafka's refusals into Unavailable (a 503), never a 500."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from anchorline.events import JobKind, JobRequested, new_id, utcnow
from anchorline.infra.ports import free_port
from anchorline.settings import Settings
from anchorline_gateway.publisher import KafkaPublisher, Unavailable


class RefusingProducer:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def produce(self, *args: Any, **kwargs: Any) -> None:
        raise self.error

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    def list_topics(self, timeout: float) -> None:
        return None  # as if the broker answered


@pytest.mark.parametrize(
    "error",
    [BufferError("Local: Queue full"), KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))],
)
def test_a_message_kafka_refuses_at_once_is_unavailable(error: Exception) -> None:
    publisher = KafkaPublisher(Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}"), timeout_s=1)
    real = publisher.producer
    publisher.producer = RefusingProducer(error)  # type: ignore[assignment]
    job = JobRequested(new_id(), JobKind.VERIFY, "sha256:" + "00" * 32, "{}", "0x", utcnow())
    try:
        with pytest.raises(Unavailable, match="Kafka did not take the request"):
            asyncio.run(publisher.publish([job]))
    finally:
        publisher.close()
        real.flush(0)
