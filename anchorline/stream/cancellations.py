"""Cancelled jobs: which run of which job a stage must skip.

The gateway writes a record to the compacted cancellations topic, keyed by job id, naming the
generation (run) it cancels; every stage process reads the topic from its start and keeps it in
memory, and its runner skips a record whose jobs are all cancelled, publishing `cancelled` for
them instead of handling it. A later run (a retry, a replay) has a higher generation and is not
cancelled.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)

from anchorline.errors import BadInput
from anchorline.events import JOB_ID_RE, MAX_GENERATION
from anchorline.settings import Settings
from anchorline.stream.kafka import client_config
from anchorline.untrusted import parse_json

log = logging.getLogger(__name__)
MAX_VALUE_BYTES = 256
RETRY_S = 5.0
EXPIRE_EVERY_S = 60.0


def cancel_record(job_id: str, *, generation: int, at: datetime) -> tuple[bytes, bytes]:
    """The key and value that cancel run `generation` of a job."""
    value = {"generation": generation, "cancelled_at": at.isoformat()}
    return job_id.encode(), json.dumps(value, separators=(",", ":")).encode()


def parse_record(key: bytes | None, value: bytes | None) -> tuple[str, int] | None:
    """(job id, generation) of a record, or None if it is not one the gateway writes (whoever
    may write the topic could have forged it: read with bounds)."""
    job_id = (key or b"").decode("utf-8", "replace")
    if not JOB_ID_RE.fullmatch(job_id):
        return None
    try:
        raw = parse_json(value or b"", what="cancellation", max_bytes=MAX_VALUE_BYTES, max_depth=1)
    except BadInput:
        return None
    generation = raw.get("generation") if isinstance(raw, dict) else None
    if type(generation) is not int or not 0 <= generation <= MAX_GENERATION:
        return None
    return job_id, generation


class CancelledJobs:
    """Job id → the highest run cancelled, and when; the logic, without Kafka. A cancellation
    older than `keep_s` is forgotten (`expire`, and not taken when read): its job's request has
    left its topic by then, so memory holds what a retention's worth of cancelling adds up to,
    not every cancellation ever written."""

    def __init__(
        self, *, keep_s: float = float("inf"), clock: Callable[[], float] = time.time
    ) -> None:
        self.keep_s = keep_s
        self.clock = clock
        self.runs: dict[str, tuple[int, float]] = {}

    def add(self, job_id: str, generation: int, *, at: float | None = None) -> None:
        """Run `generation` of a job cancelled at `at` (seconds since the epoch; now if None,
        and never later than now: a forged future time must not keep it for ever)."""
        now = self.clock()
        when = now if at is None else min(at, now)
        if when < now - self.keep_s:
            return
        kept, _ = self.runs.get(job_id, (-1, 0.0))
        if generation >= kept:
            self.runs[job_id] = (generation, when)

    def is_cancelled(self, job_id: str, generation: int) -> bool:
        return generation <= self.runs.get(job_id, (-1, 0.0))[0]

    def expire(self) -> int:
        """Forget the cancellations older than `keep_s`; how many were."""
        oldest = self.clock() - self.keep_s
        old = [job_id for job_id, (_, when) in self.runs.items() if when < oldest]
        for job_id in old:
            del self.runs[job_id]
        return len(old)


class Cancellations(CancelledJobs):
    """The cancellations topic, followed by `run` on a thread of the stage process."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(keep_s=settings.cancellation_retention_s)
        self.settings = settings
        self.topic = settings.topics.cancellations

    def run(self, halt: threading.Event) -> None:
        while not halt.is_set():
            try:
                self._follow(halt)
            except KafkaException as exc:
                log.warning("cannot follow %s (%s); trying again", self.topic, exc)
                halt.wait(RETRY_S)

    def _follow(self, halt: threading.Event) -> None:
        config = client_config(self.settings) | {
            "group.id": f"anchorline-cancellations-{uuid.uuid4()}",  # assigned, never committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
        consumer = Consumer(config)
        try:
            # Briefly: the stage's shutdown waits for this thread.
            metadata = consumer.list_topics(self.topic, timeout=1).topics[self.topic]
            if metadata.error is not None or not metadata.partitions:
                log.warning("no topic %s yet; cancellations not followed", self.topic)
                halt.wait(RETRY_S)
                return
            places = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
            consumer.assign(places)
            next_expiry = time.monotonic() + EXPIRE_EVERY_S
            while not halt.is_set():
                for message in consumer.consume(num_messages=500, timeout=0.2):
                    if message.error() is None:
                        found = parse_record(message.key(), message.value())
                        if found is not None:
                            self.add(*found, at=_written_at(message))
                if time.monotonic() >= next_expiry:
                    self.expire()
                    next_expiry = time.monotonic() + EXPIRE_EVERY_S
        finally:
            consumer.close()


def _written_at(message: Message) -> float | None:
    """When the broker got a cancellation (its timestamp), in seconds; None if it has none."""
    kind, millis = message.timestamp()
    return millis / 1000 if kind != TIMESTAMP_NOT_AVAILABLE and millis > 0 else None
