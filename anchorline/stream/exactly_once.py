"""Consume, produce and commit in one Kafka transaction: the exactly-once core of every loop."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from anchorline.settings import Settings
from anchorline.stream.consume import take
from anchorline.stream.headers import Header
from anchorline.stream.kafka import consumer_config, producer_config, transactional_id
from anchorline.stream.topics import Place, place_of
from anchorline.stream.watchdog import Watchdog, exit_hung, exit_left_group, exit_to_restart

log = logging.getLogger(__name__)
RETRY_PAUSE_S = 0.1
# A producer whose open transaction outlived transaction.timeout.ms (the broker was away, or
# slow) is fenced: the coordinator aborted the transaction and bumped the producer's epoch.
FENCED = (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[Header] = field(default_factory=list)


class ExactlyOnce:
    """One consumer and one transactional producer: a batch's output commits with its offsets."""

    def __init__(
        self, settings: Settings, *, group_id: str, service: str, watchdog: Watchdog | None = None
    ) -> None:
        self.settings = settings
        self.service = service
        self.consumer = Consumer(consumer_config(settings, group_id=group_id))
        self.transactional_id = transactional_id(service)
        self.producer = self._new_producer()
        self.deadline_s = settings.commit_deadline_s
        self.watchdog = watchdog or Watchdog(self.deadline_s, on_expiry=self._leave_and_exit)

    def _new_producer(self) -> Producer:
        return Producer(producer_config(self.settings, transactional_id=self.transactional_id))

    def start(self, topics: list[str], **callbacks: Any) -> None:
        with self.watchdog.guard("init_transactions"):
            _until_done(lambda: self.producer.init_transactions(self.deadline_s))
        self.consumer.subscribe(topics, **callbacks)

    def poll(self, *, limit: int, timeout: float) -> list[Message]:
        """Up to `limit` messages, as soon as there is one (waiting up to `timeout` for it)."""
        messages = []
        for message in take(self.consumer, limit=limit, timeout=timeout):
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.code() == KafkaError._MAX_POLL_EXCEEDED:
                exit_left_group(self.service)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
        return messages

    def commit(
        self,
        batch: list[Message],
        outgoing: list[Outgoing],
        notes: Mapping[Place, str] | None = None,
    ) -> bool:
        """Produce `outgoing` and commit `batch`'s offsets atomically, each partition's with its
        `notes` as the offset's metadata; False if rolled back.

        The whole commit runs under the watchdog: if librdkafka blocks in it past the deadline
        (it can, while the broker is away), the process exits rather than hang for good.
        """
        with self.watchdog.guard("committing a transaction"):
            return self._commit(batch, outgoing, notes or {})

    def notes(self, places: Iterable[Place]) -> dict[Place, str]:
        """The metadata committed with each partition's offset ("" when none was), asked of the
        group coordinator; {} when it does not answer within half the commit deadline."""
        asked = [TopicPartition(topic, partition) for topic, partition in places]
        try:
            with self.watchdog.guard("reading committed offsets"):
                committed = self.consumer.committed(asked, timeout=self.deadline_s / 2)
        except KafkaException as exc:
            log.warning("committed offsets not read (%s): resends recalled from memory only", exc)
            return {}
        return {(p.topic, p.partition): p.metadata or "" for p in committed if p.error is None}

    def _commit(
        self, batch: list[Message], outgoing: list[Outgoing], notes: Mapping[Place, str]
    ) -> bool:
        try:
            self.producer.begin_transaction()
            for message in outgoing:
                self.producer.produce(
                    message.topic, key=message.key, value=message.value, headers=message.headers
                )
            offsets = _next_offsets(batch, notes)
            group = self.consumer.consumer_group_metadata()
            _until_done(
                lambda: self.producer.send_offsets_to_transaction(offsets, group, self.deadline_s)
            )
            _until_done(lambda: self.producer.commit_transaction(self.deadline_s))
            return True
        except KafkaException as exc:
            error = exc.args[0]
            if not error.txn_requires_abort() and not _fenced(error):
                # Whether the broker committed is unknown: only a new process, reading from the
                # committed offsets, is sure to run each record's effects once.
                exit_to_restart(self.service, f"committing a transaction failed: {error}")
            if not _fenced(error):
                log.warning("transaction aborted (%s); rewinding the batch", error)
                error = self._abort()
            if error.fatal():  # fenced, or made unusable while aborting: nothing was committed
                log.warning("producer unusable (%s); a new one runs the batch again", error)
            self._replace_producer()
            self._rewind(batch)
            return False

    def _abort(self) -> KafkaError:
        """Abort the open transaction; the error that ended the producer if aborting failed
        fatally (the broker came back having fenced it, or lost its transaction state)."""
        try:
            _until_done(lambda: self.producer.abort_transaction(self.deadline_s))
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not error.fatal():
                exit_to_restart(self.service, f"aborting a transaction failed: {error}")
            return error
        return KafkaError(KafkaError.NO_ERROR)

    def _replace_producer(self) -> None:
        """Nothing of the batch was committed: we aborted the transaction, the coordinator
        aborted the fenced producer's, or aborts the unusable one's when the new producer
        starts. The new producer has the same transactional id and so a new epoch, which fences
        any write of the old one still on its way: without it (librdkafka has no KIP-890 epoch
        per transaction), a produce of the aborted transaction that timed out here but reached
        its partition late could join the next transaction and commit with it, an outcome
        twice. Our ids are per process, so no other process shares them; offsets stay fenced
        by the group generation."""
        unusable, self.producer = self.producer, self._new_producer()
        with contextlib.suppress(KafkaException):
            unusable.purge()
        _until_done(lambda: self.producer.init_transactions(self.deadline_s))

    def _leave_and_exit(self, what: str, waited_s: float) -> None:
        """Leave the consumer group if the broker lets us (so a new process gets the partitions
        now, not after the session timeout), then exit."""
        leaving = threading.Thread(target=self.consumer.close, name="leave", daemon=True)
        leaving.start()
        leaving.join(5)
        exit_hung(what, waited_s)

    def rewind(self, batch: list[Message]) -> None:
        """Seek back to the first of `batch`'s messages in each partition: they were polled
        but not handled, and are delivered again."""
        self._rewind(batch)

    def _rewind(self, batch: list[Message]) -> None:
        first: dict[tuple[str, int], int] = {}
        for message in batch:
            place = place_of(message)
            first[place] = min(first.get(place, message.offset() or 0), message.offset() or 0)
        for (topic, partition), offset in first.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                # No longer ours (a rebalance while the broker was away): its next owner starts
                # from the committed offset, which is before this batch.
                log.warning("cannot rewind %s[%d] to %d: %s", topic, partition, offset, exc)

    def close(self) -> None:
        self.consumer.close()
        self.watchdog.stop()  # its thread holds this loop, and so the producer, alive


def _fenced(error: KafkaError) -> bool:
    return bool(error.fatal()) and error.code() in FENCED


def _until_done(call: Callable[[], Any]) -> None:
    """Call again while librdkafka says the error is retriable (a timeout, a coordinator
    moving); the watchdog bounds the whole."""
    while True:
        try:
            call()
            return
        except KafkaException as exc:
            error = exc.args[0]
            if not error.retriable() or error.txn_requires_abort():
                raise
            log.warning("retrying a transactional call: %s", error)
            time.sleep(RETRY_PAUSE_S)  # in case librdkafka answers at once, not after its timeout


def _next_offsets(batch: list[Message], notes: Mapping[Place, str]) -> list[TopicPartition]:
    last: dict[Place, int] = {}
    for message in batch:
        place = place_of(message)
        last[place] = max(last.get(place, -1), message.offset() or 0)
    return [
        TopicPartition(topic, partition, offset + 1, metadata=notes.get((topic, partition), ""))
        for (topic, partition), offset in last.items()
    ]
