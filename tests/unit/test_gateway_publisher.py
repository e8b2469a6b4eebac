"""The Kafka publisher turns librdkafka's refusals into Unavailable (a 503), never a 500."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from anchorline.events import JobKind, JobRequested, new_id, utcnow
from anchorline.infra.ports import free_port
from anchorline.settings import Settings
from anchorline.stream.publisher import _Acks
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


def _acks_of(outcomes: list[KafkaError | None]) -> asyncio.Future[None]:
    """The future a publish of len(outcomes) records waits on, after librdkafka's delivery
    reports (called from another thread, as its poller does) said `outcomes`."""

    async def run() -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        acks = _Acks(loop, future, len(outcomes))
        reports = threading.Thread(
            target=lambda: [acks.on_delivery(error, None) for error in outcomes]  # type: ignore[arg-type, func-returns-value]
        )
        reports.start()
        reports.join()
        with contextlib.suppress(Unavailable):
            await asyncio.wait_for(asyncio.shield(future), timeout=5)
        return future

    return asyncio.run(run())


def test_a_publish_is_acknowledged_once_every_record_is() -> None:
    future = _acks_of([None, None, None])
    assert future.done() and future.exception() is None


def test_the_first_refusal_fails_the_publish_whatever_comes_after() -> None:
    refused = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    future = _acks_of([None, refused, None])
    assert isinstance(future.exception(), Unavailable)
    assert "Kafka refused" in str(future.exception())
