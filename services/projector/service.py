"""The projector process: job.status → jobs table, offsets committed after the rows."""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from sqlalchemy.exc import SQLAlchemyError

from anchorline.errors import Poison
from anchorline.events import JobStatus
from anchorline.settings import Settings
from anchorline.stream import codec
from anchorline.stream.consume import take
from anchorline.stream.kafka import consumer_config, producer_config
from anchorline.stream.runner import dead_letter_headers, incoming
from anchorline_projector.apply import check_status
from anchorline_projector.store import SqlJobStore

log = logging.getLogger(__name__)
BATCH = 500
POLL_S = 0.5


class Projector:
    """Consumes job.status and applies it to the jobs table until `stop` is set."""

    def __init__(self, settings: Settings, store: SqlJobStore) -> None:
        self.settings = settings
        self.store = store
        self.topics = settings.topics
        self.consumer = Consumer(consumer_config(settings, group_id="anchorline-projector"))
        self.dead_letters = Producer(producer_config(settings))

    def run(self, stop: threading.Event) -> None:
        self.consumer.subscribe([self.topics.job_status])
        log.info("projector consuming %s", self.topics.job_status)
        try:
            while not stop.is_set():
                taken = take(self.consumer, limit=BATCH, timeout=POLL_S)
                messages = [m for m in taken if _usable(m)]
                if messages and self._apply(messages, stop):
                    self._commit()
        finally:
            self.dead_letters.flush(10)
            self.consumer.close()

    def _commit(self) -> None:
        """Commit what was applied. A commit the broker refuses (its coordinator away, the
        group rebalanced) is not an error: the rows are written, applying is idempotent, and
        whoever owns the partitions next reads those events again from the last commit."""
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            log.warning("offsets not committed (%s); their events will be applied again", exc)

    def _apply(self, messages: list[Message], stop: threading.Event) -> bool:
        events = [event for event in map(self._decode, messages) if event is not None]
        delay = 0.5
        while not stop.is_set():
            try:
                self.store.apply_batch(events)
                self.dead_letters.flush(30)
                return True
            except SQLAlchemyError as exc:
                log.warning("job store unavailable (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        return False

    def _decode(self, message: Message) -> JobStatus | None:
        try:
            return check_status(codec.decode(message.value(), JobStatus))
        except Poison as exc:
            raw = incoming(message)
            log.warning("dead-lettering undecodable status at offset %s: %s", raw.offset, exc)
            self.dead_letters.produce(
                self.topics.dead_letter(raw.topic),
                key=raw.key,
                value=raw.value or b"",
                headers=dead_letter_headers(raw, exc, attempts=0),
            )
            return None


def _usable(message: Message) -> bool:
    error = message.error()
    if error is None:
        return True
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer error: %s", error)
    return False
