"""The one runner every stage shares: poll, decode, handle, produce, commit.

`MessageProcessor` is the logic (decode, run the handler, map its errors to retries,
`failed` jobs and dead letters) and needs no broker. `StageRunner` drives it from Kafka,
committing each batch's output and consumed offsets in one transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from anchorline import codec
from anchorline.errors import Permanent, Poison
from anchorline.events import Event, JobRef, JobStatus, StageState, refs_of, utcnow
from anchorline.kafka import consumer_config, producer_config, transactional_id
from anchorline.settings import Settings
from anchorline.stage import StageHandler
from anchorline.topics import Topics, key_of

log = logging.getLogger(__name__)

Header = tuple[str, str | bytes | None]


@dataclass(frozen=True)
class Incoming:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[Header] = field(default_factory=list)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_s: float = 1.0

    def delay(self, attempt: int) -> float:
        return self.backoff_s * 2 ** (attempt - 1)


def dead_letter_headers(message: Incoming, exc: BaseException, *, attempts: int) -> list[Header]:
    """Spring Kafka's dead-letter header names, values as UTF-8 text."""
    return [
        ("kafka_dlt-exception-fqcn", f"{type(exc).__module__}.{type(exc).__qualname__}".encode()),
        ("kafka_dlt-exception-message", str(exc).encode()),
        ("kafka_dlt-original-topic", message.topic.encode()),
        ("kafka_dlt-original-partition", str(message.partition).encode()),
        ("kafka_dlt-original-offset", str(message.offset).encode()),
        ("kafka_dlt-original-timestamp", str(message.timestamp_ms).encode()),
        ("anchorline-attempts", str(attempts).encode()),
    ]


class MessageProcessor:
    """Turns one batch of incoming messages into the messages to produce with its offsets."""

    def __init__(
        self,
        handler: StageHandler,
        *,
        topics: Topics,
        retry: RetryPolicy,
        publish_now: Callable[[JobStatus], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.handler = handler
        self.topics = topics
        self.retry = retry
        self.publish_now = publish_now
        self.sleep = sleep

    def process(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        out: list[Outgoing] = []
        decoded: list[tuple[Incoming, Any]] = []
        for message in batch:
            try:
                decoded.append((message, codec.decode(message.value, self.handler.consumes)))
            except Poison as exc:
                log.warning("dead-lettering undecodable message at %s", _where(message))
                out.extend(self._dead_letter([(message, None)], exc, attempts=0))
        groups = [decoded] if self.handler.batched else [[item] for item in decoded]
        for group in groups:
            if group:
                out.extend(self._run(group))
        return out

    def _run(self, group: list[tuple[Incoming, Any]]) -> list[Outgoing]:
        refs = [ref for _, event in group for ref in refs_of(event)]
        stage = self.handler.stage
        attempt = 1
        while True:
            for ref in refs:
                self.publish_now(ref.status(stage, StageState.RUNNING, attempt=attempt, progress=0))
            try:
                results = self.handler.handle(
                    [event for _, event in group], self._reporter(attempt)
                )
                return [self.encode(event) for event in results]
            except Permanent as exc:
                return [self.encode(self._failed(ref, exc, attempt)) for ref in refs]
            except Poison as exc:
                return self._dead_letter(group, exc, attempts=attempt)
            except Exception as exc:  # Retryable, and whatever a bug or a library throws
                if attempt >= self.retry.max_attempts:
                    log.warning("dead-lettering after %d attempts: %s", attempt, exc)
                    return self._dead_letter(group, exc, attempts=attempt)
                delay = self.retry.delay(attempt)
                log.info("attempt %d failed (%s); retrying in %.1fs", attempt, exc, delay)
                for ref in refs:
                    self.publish_now(self._retrying(ref, exc, attempt, delay))
                self.sleep(delay)
                attempt += 1

    def _reporter(self, attempt: int) -> Callable[[JobRef, int], None]:
        def report(ref: JobRef, percent: int) -> None:
            status = ref.status(
                self.handler.stage, StageState.RUNNING, attempt=attempt, progress=percent
            )
            self.publish_now(status)

        return report

    def _failed(self, ref: JobRef, exc: Exception, attempt: int) -> JobStatus:
        return ref.status(
            self.handler.stage,
            StageState.FAILED,
            attempt=attempt,
            error=str(exc),
            error_class=type(exc).__name__,
        )

    def _retrying(self, ref: JobRef, exc: Exception, attempt: int, delay: float) -> JobStatus:
        return ref.status(
            self.handler.stage,
            StageState.RETRYING,
            attempt=attempt,
            error=str(exc),
            error_class=type(exc).__name__,
            next_attempt_at=utcnow() + timedelta(seconds=delay),
        )

    def _dead_letter(
        self, group: Sequence[tuple[Incoming, Any]], exc: BaseException, *, attempts: int
    ) -> list[Outgoing]:
        out: list[Outgoing] = []
        for message, event in group:
            headers = dead_letter_headers(message, exc, attempts=attempts)
            out.append(
                Outgoing(
                    self.topics.dead_letter(message.topic),
                    message.key,
                    message.value or b"",
                    headers,
                )
            )
            for ref in refs_of(event) if event is not None else []:
                dead = ref.status(
                    self.handler.stage,
                    StageState.DEAD,
                    attempt=max(attempts, 1),
                    error=str(exc),
                    error_class=type(exc).__name__,
                )
                out.append(self.encode(dead))
        return out

    def encode(self, event: Event) -> Outgoing:
        return Outgoing(self.topics.for_event(event), key_of(event).encode(), codec.encode(event))


def _where(message: Incoming) -> str:
    return f"{message.topic}[{message.partition}]@{message.offset}"


def incoming(message: Message) -> Incoming:
    _, timestamp = message.timestamp()
    return Incoming(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value(),
        timestamp_ms=timestamp,
    )


class StageRunner:
    """Runs one stage against Kafka until `stop` is set, exactly once per batch."""

    def __init__(self, handler: StageHandler, settings: Settings, *, service: str) -> None:
        self.handler = handler
        self.settings = settings
        self.service = service
        self.topics = settings.topics
        self.source = self.topics.request_topic(handler.stage)
        self.max_batch = settings.batch_max_jobs if handler.batched else settings.poll_batch
        self.max_wait = settings.batch_max_wait_s if handler.batched else 0.0
        self.consumer = Consumer(consumer_config(settings, group_id=f"anchorline-{service}"))
        self.producer = Producer(
            producer_config(settings, transactional_id=transactional_id(service))
        )
        self.status_producer = Producer(producer_config(settings))
        self.processor = MessageProcessor(
            handler,
            topics=self.topics,
            retry=RetryPolicy(settings.max_attempts, settings.retry_backoff_s),
            publish_now=self._publish_now,
        )
        self.pending: list[Message] = []
        self.pending_since = 0.0

    def _publish_now(self, status: JobStatus) -> None:
        self.status_producer.produce(
            self.topics.job_status, key=status.job_id.encode(), value=codec.encode(status)
        )
        self.status_producer.poll(0)

    def run(self, stop: threading.Event) -> None:
        self.producer.init_transactions(30)
        self.consumer.subscribe([self.source], on_revoke=self._on_revoke)
        log.info("%s consuming %s", self.service, self.source)
        try:
            while not stop.is_set():
                self._poll_once()
            self.flush()
        finally:
            self.status_producer.flush(10)
            self.consumer.close()

    def _poll_once(self) -> None:
        room = max(1, self.max_batch - len(self.pending))
        for message in self.consumer.consume(num_messages=room, timeout=0.2):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", error)
                continue
            if not self.pending:
                self.pending_since = time.monotonic()
            self.pending.append(message)
        due = time.monotonic() - self.pending_since >= self.max_wait
        if self.pending and (len(self.pending) >= self.max_batch or due):
            self.flush()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.flush()

    def flush(self) -> None:
        """Process the pending messages and commit their output and offsets in one transaction."""
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        outgoing = self.processor.process([incoming(message) for message in batch])
        self.status_producer.flush(30)
        try:
            self._commit(batch, outgoing)
        except KafkaException as exc:
            error = exc.args[0]
            if not error.txn_requires_abort():
                raise
            log.warning("transaction aborted (%s); rewinding the batch", error)
            self.producer.abort_transaction(30)
            self._rewind(batch)

    def _commit(self, batch: list[Message], outgoing: list[Outgoing]) -> None:
        self.producer.begin_transaction()
        for message in outgoing:
            self.producer.produce(
                message.topic, key=message.key, value=message.value, headers=message.headers
            )
        self.producer.send_offsets_to_transaction(
            _next_offsets(batch), self.consumer.consumer_group_metadata(), 30
        )
        self.producer.commit_transaction(60)

    def _rewind(self, batch: list[Message]) -> None:
        first: dict[tuple[str, int], int] = {}
        for message in batch:
            place = (message.topic() or "", message.partition() or 0)
            first[place] = min(first.get(place, message.offset() or 0), message.offset() or 0)
        for (topic, partition), offset in first.items():
            self.consumer.seek(TopicPartition(topic, partition, offset))


def _next_offsets(batch: list[Message]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for message in batch:
        place = (message.topic() or "", message.partition() or 0)
        last[place] = max(last.get(place, -1), message.offset() or 0)
    return [
        TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in last.items()
    ]
