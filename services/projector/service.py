"""The projector process: job.status → jobs table, offsets committed after the rows."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TypeVar

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from prometheus_client import Counter
from sqlalchemy.exc import DataError, SQLAlchemyError

from anchorline.errors import Poison, Retryable
from anchorline.events import JobRequested, JobStatus, Stage, utcnow
from anchorline.settings import Settings
from anchorline.stream import codec, headers, tracing
from anchorline.stream.consume import take
from anchorline.stream.exactly_once import Outgoing
from anchorline.stream.kafka import consumer_config, producer_config
from anchorline.stream.registry_codec import CONFLUENT_MAGIC, Codec, codec_for, decode
from anchorline.stream.runner import dead_letter_headers, fit, incoming
from anchorline.stream.topics import Place, place_of
from anchorline.stream.tracing import IDS_ONLY, BatchSpans, TraceContext, tracer_for
from anchorline_projector.apply import JobRow, check_status
from anchorline_projector.notices import notice, notice_without_result
from anchorline_projector.store import PRUNE_BATCH, SqlJobStore

log = logging.getLogger(__name__)
T = TypeVar("T")
Request = tuple[bytes | None, bytes]  # a job request's key and value, as the API's retry reads it
GROUP = "anchorline-projector"
APPLIED = Counter(
    "anchorline_projector_applied", "Status events the projector applied to the jobs table."
)
DEAD_LETTERED = Counter(
    "anchorline_projector_dead_lettered", "Status records the projector dead-lettered."
)
BATCH = 500
POLL_S = 0.5
# Offsets are committed at most this often (all applied since, at once): a commit a batch, at
# dozens of batches a second, queued OffsetCommit requests on the coordinator's connection
# ahead of the heartbeats, and the group timed the projector out (10 s stalls, measured).
COMMIT_EVERY_S = 1.0
PRUNE_EVERY_S = 60.0
PRUNE_ROUNDS = 10  # pruning transactions at most each time: the batches wait meanwhile
PRUNED = Counter(
    "anchorline_projector_pruned",
    "Jobs the projector deleted from the jobs table past JOB_RETENTION_S.",
)


class Projector:
    """Consumes job.status and applies it to the jobs table until `stop` is set."""

    def __init__(self, settings: Settings, store: SqlJobStore) -> None:
        self.settings = settings
        self.store = store
        self.topics = settings.topics
        self.requests = frozenset(self.topics.lanes(Stage.VERIFY))  # every priority's requests
        self.consumer = Consumer(
            consumer_config(settings, group_id=GROUP) | {"on_commit": _on_commit}
        )
        # Dead letters, and the notifications of jobs that ended.
        self.dead_letters = Producer(producer_config(settings))
        self.webhook_urls = settings.webhook_url_map
        self.applied: dict[Place, int] = {}  # the next offset of each partition, once applied
        self.codec = codec_for(settings)
        self.tracer = tracer_for(settings, service="projector")
        self.next_prune = 0.0  # when to delete the jobs past JOB_RETENTION_S next
        self.next_commit = 0.0  # when to commit the offsets applied since the last commit
        self.uncommitted = False  # offsets applied and not committed yet

    def run(self, stop: threading.Event) -> None:
        self.consumer.subscribe([self.topics.job_status, *self.requests], on_revoke=self._on_revoke)
        log.info("projector consuming %s", self.topics.job_status)
        try:
            while not stop.is_set():
                taken = take(self.consumer, limit=BATCH, timeout=POLL_S)
                messages = [m for m in taken if _usable(m)]
                requests = [m for m in messages if m.topic() in self.requests]
                statuses = [m for m in messages if m.topic() not in self.requests]
                if messages and self._apply(statuses, self._requests(requests), stop):
                    self._commit(messages)
                elif not taken and self.uncommitted:  # idle: the last offsets, when due
                    self._commit([])
                self._prune_now_and_then()
        finally:
            self.dead_letters.flush(10)
            self._commit([], asynchronous=False)
            self.consumer.close()
            self.codec.close()
            self.tracer.close()

    def _prune_now_and_then(self) -> None:
        """Each PRUNE_EVERY_S, delete the jobs past JOB_RETENTION_S (if set), a bounded number
        of transactions at a time; a database that refuses now is asked again next time."""
        retention_s = self.settings.job_retention_s
        if retention_s <= 0 or time.monotonic() < self.next_prune:
            return
        self.next_prune = time.monotonic() + PRUNE_EVERY_S
        before = utcnow() - timedelta(seconds=retention_s)
        try:
            for _ in range(PRUNE_ROUNDS):
                gone = self.store.prune(before)
                PRUNED.inc(gone)
                if gone < PRUNE_BATCH:
                    return
        except SQLAlchemyError as exc:
            log.warning("old jobs not pruned (%s); trying again in %.0f s", exc, PRUNE_EVERY_S)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """No longer ours: a commit for them at stop would move their new owner's back."""
        for partition in partitions:
            self.applied.pop((partition.topic, partition.partition), None)

    def _commit(self, applied: list[Message], *, asynchronous: bool = True) -> None:
        """Note the offsets past the `applied` messages, and commit every offset applied so far
        if COMMIT_EVERY_S passed since the last commit (or when stopping), waiting for the
        broker only when stopping: waiting took two fifths of the projector's time under load,
        and each row is written before its offset is committed anyway. A commit the broker
        refuses (its coordinator away, the group rebalanced) is not an error: applying is
        idempotent, and whoever owns the partitions next reads those events again from the last
        commit."""
        self.applied |= {place_of(message): (message.offset() or 0) + 1 for message in applied}
        self.uncommitted = self.uncommitted or bool(applied)
        if asynchronous and time.monotonic() < self.next_commit:
            return
        self.next_commit = time.monotonic() + COMMIT_EVERY_S
        self.uncommitted = False
        offsets = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in self.applied.items()
        ]
        if not offsets:
            return
        try:
            if asynchronous:  # two calls: the stubs type each by its literal
                self.consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("offsets not committed (%s); their events will be applied again", exc)

    def _requests(self, requests: list[Message]) -> list[Request]:
        """The batch's requests as the API's retry reads them (one not readable is not kept)."""
        kept = [(message.key(), single_object(self.codec, message.value())) for message in requests]
        return [(key, value) for key, value in kept if value is not None]

    def _keep_alone(self, requests: list[Request]) -> None:
        """Keep the requests in a transaction of their own; one the table refuses for its values
        is not kept (its job cannot be retried by the API)."""
        _alone_if_refused(
            requests,
            self.store.keep_requests,
            lambda _, reason: log.warning(
                "a request not kept for a retry: the job store refuses it: %s", reason
            ),
        )

    def _apply(
        self, messages: list[Message], requests: list[Request], stop: threading.Event
    ) -> bool:
        """Keep the requests and apply the statuses, then hand the jobs that ended to the
        notifier; False if stopped while the database or the registry was away."""
        decoded = [(message, self._decode(message, stop)) for message in messages]
        if stop.is_set():  # while waiting for the schema registry: nothing applied, no commit
            return False
        events = [event for _, event in decoded if event is not None]
        source = {event.event_id: message for message, event in decoded if event is not None}
        carried = _carried(decoded)
        spans = self._spans(carried, source)

        def store() -> None:
            ended: list[JobRow] = []
            callbacks: dict[str, str] = {}
            traces = {event_id: context.trace_id for event_id, context in carried.items()}
            self._store(events, source, ended, traces, requests, callbacks)
            self._notify(ended, callbacks, spans)

        try:
            if not _outlasting_outages(store, stop):
                return False
        finally:
            spans.end()
        self.dead_letters.flush(30)
        APPLIED.inc(len(events))
        return True

    def _spans(self, carried: dict[str, TraceContext], source: dict[str, Message]) -> BatchSpans:
        """A span for each status that carried a trace context (recorded only with an
        exporter: without one, nothing to do)."""
        spans = BatchSpans(self.tracer, name="project job.status")
        if self.tracer is IDS_ONLY:
            return spans
        for event_id, context in carried.items():
            message = source[event_id]
            spans.start(
                event_id,
                headers={tracing.TRACEPARENT: context.traceparent.encode()},
                key=None,
                topic=message.topic() or "",
            )
            spans.about(event_id, [(message.key() or b"").decode("utf-8", "replace")])
        return spans

    def _store(
        self,
        events: list[JobStatus],
        source: dict[str, Message],
        ended: list[JobRow],
        traces: dict[str, str],
        requests: list[Request],
        callbacks: dict[str, str],
    ) -> None:
        """Keep `requests` and apply `events` in one transaction; if the database refuses a
        value (not for being away), the requests are kept on their own and each event applied
        alone, one it refuses dead-lettered and the rest applied without it."""

        def apply(batch: list[JobStatus], requests: Sequence[Request] = ()) -> None:
            refused: list[tuple[JobStatus, Poison]] = []
            self.store.apply_batch(
                batch,
                refuse=lambda *forged: refused.append(forged),
                ended=ended,
                traces=traces,
                requests=requests,
                callbacks=callbacks,
            )
            for event, reason in refused:
                self._dead_letter(source[event.event_id], reason)

        if requests:
            try:
                apply(events, requests)
                return
            except DataError:
                self._keep_alone(requests)
        _alone_if_refused(
            events,
            apply,
            lambda event, reason: self._dead_letter(
                source[event.event_id], Poison(f"the job store refuses this status: {reason}")
            ),
        )

    def _notify(self, ended: list[JobRow], callbacks: dict[str, str], spans: BatchSpans) -> None:
        """Hand the jobs that ended to the notifier (produced before the offsets are committed:
        at least once; the notifier's webhook-id lets a receiver drop a repeat)."""
        for row in ended:
            event = notice(row, callbacks=callbacks, defaults=self.webhook_urls)
            if event is None:
                continue
            value = codec.encode(event)  # single-object: every consumer reads it
            if len(value) > self.settings.max_record_bytes:  # a huge result: the rest still goes
                value = codec.encode(notice_without_result(event))
            try:
                self.dead_letters.produce(
                    self.topics.notify_requested,
                    key=row.job_id.encode(),
                    value=value,
                    headers=[
                        *headers.encode_generations({row.job_id: row.generation}),
                        *_trace_header(row, spans),
                    ],
                )
            except (KafkaException, BufferError) as exc:
                log.warning("the webhook of job %s not requested: %s", row.job_id, exc)

    def _decode(self, message: Message, stop: threading.Event) -> JobStatus | None:
        delay = 0.5
        while not stop.is_set():
            try:
                return check_status(decode(self.codec, message.value(), JobStatus))
            except Retryable as exc:  # the schema registry did not answer: wait, as for the DB
                log.warning("schema registry unavailable (%s); retrying in %.1fs", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 10.0)
            except Exception as exc:  # Poison, or whatever else one forged record provokes
                self._dead_letter(message, exc)
                return None
        return None

    def _dead_letter(self, message: Message, exc: Exception) -> None:
        DEAD_LETTERED.inc()
        raw = incoming(message)
        job = (raw.key or b"")[:64].decode("utf-8", "replace")  # a status is keyed by its job
        log.warning(
            "dead-lettering the status at offset %s: %.200s", raw.offset, exc, extra={"job_id": job}
        )
        letter = fit(
            Outgoing(
                self.topics.dead_letter(raw.topic),
                raw.key,
                raw.value or b"",
                dead_letter_headers(raw, exc, attempts=0),
            ),
            max_bytes=self.settings.max_record_bytes,
        )
        self.dead_letters.produce(
            letter.topic, key=letter.key, value=letter.value, headers=letter.headers
        )


def _carried(decoded: list[tuple[Message, JobStatus | None]]) -> dict[str, TraceContext]:
    """The valid trace context each status carried, by event id (a malformed one is none)."""
    found = {}
    for message, event in decoded:
        if event is None:
            continue
        context = tracing.of_headers(headers.as_map(message.headers()))
        if context is not None:
            found[event.event_id] = context
    return found


def _trace_header(row: JobRow, spans: BatchSpans) -> list[tuple[str, bytes]]:
    """A webhook's request continues its job's trace: from this batch's span of the job, or
    a new span of the trace the row keeps."""
    context = spans.by_key.get(row.job_id.encode())
    if context is None and row.trace_id is not None:
        context = TraceContext(row.trace_id, "0" * 16).child()
    return [(tracing.TRACEPARENT, context.traceparent.encode())] if context is not None else []


def _on_commit(error: KafkaError | None, partitions: list[TopicPartition]) -> None:
    if error is not None and error.code() != KafkaError._NO_OFFSET:
        log.warning("offsets not committed (%s); their events will be applied again", error)


def _outlasting_outages(call: Callable[[], object], stop: threading.Event) -> bool:
    """Call until the job store answers (True), waiting longer each time it does not; False
    if `stop` came first."""
    delay = 0.5
    while not stop.is_set():
        try:
            call()
            return True
        except SQLAlchemyError as exc:
            log.warning("job store unavailable (%s); retrying in %.1fs", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
    return False


def _alone_if_refused(
    items: list[T], store: Callable[[list[T]], object], refused: Callable[[T, str], None]
) -> None:
    """store(items); if the database refuses their values (DataError, not an outage), each is
    stored alone, in order (each sees the rows the earlier ones left), and one it refuses alone
    goes to `refused` with the database's reason."""
    try:
        store(items)
    except DataError as exc:
        if len(items) == 1:
            refused(items[0], _first_line(exc))
            return
        for item in items:
            _alone_if_refused([item], store, refused)


def single_object(codec_: Codec, value: bytes | None) -> bytes | None:
    """A request as the gateway's retry reads it: one in Confluent's framing re-encoded (None,
    not kept, if it cannot be read: its stage dead-letters it anyway)."""
    if not value or value[0] != CONFLUENT_MAGIC:
        return value
    try:
        return codec.encode(decode(codec_, value, JobRequested))
    except Exception as exc:  # Poison, Retryable (the registry away): no retry through the API
        log.warning("a request not kept for a retry: %.200s", exc)
        return None


def _first_line(exc: DataError) -> str:
    """What the database said, without the statement and its parameters."""
    return str(exc.orig).splitlines()[0]


def _usable(message: Message) -> bool:
    error = message.error()
    if error is None:
        return True
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer error: %s", error)
    return False
