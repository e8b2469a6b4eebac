"""The one runner every stage shares: poll, decode, handle, produce, commit.

`MessageProcessor` is the logic (decode, run the handler, map its errors to retries,
`failed` jobs and dead letters) and needs no broker. `StageRunner` drives it from Kafka,
committing each batch's output and consumed offsets in one transaction.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from anchorline.errors import OutputTooLarge, Permanent, Poison, Retryable
from anchorline.events import (
    PIPELINE,
    AnchorRequested,
    Event,
    JobRef,
    JobStatus,
    StageState,
    check_refs,
    refs_of,
    utcnow,
)
from anchorline.settings import Settings
from anchorline.stream import headers
from anchorline.stream.cancellations import Cancellations
from anchorline.stream.delay import DelayForwarder
from anchorline.stream.deliveries import DeliveryLog
from anchorline.stream.exactly_once import ExactlyOnce, Outgoing
from anchorline.stream.headers import Header
from anchorline.stream.kafka import producer_config
from anchorline.stream.lanes import Lanes
from anchorline.stream.metrics import StageMetrics
from anchorline.stream.registry_codec import SINGLE_OBJECT, Codec, codec_for, decode
from anchorline.stream.resends import CommittedRecords, Mark
from anchorline.stream.running import RunningStatuses
from anchorline.stream.stage import Closing, Prefetching, Report, StageHandler
from anchorline.stream.timelimit import DEFERRED, TimeLimit
from anchorline.stream.topics import Place, Topics, key_of, place_of
from anchorline.stream.tracing import IDS_ONLY, BatchSpans, Tracer, tracer_for
from anchorline.stream.watchdog import Watchdog

log = logging.getLogger(__name__)
# The share of HANDLING_DEADLINE_S a batch's handler calls may take between them: records the
# batch has no time left for go back to the end of their partition, unhandled and uncounted.
BATCH_BUDGET_SHARE = 0.75
# librdkafka refuses records over its message.max.bytes (1,000,000) in produce(), and the broker
# over its own (1 MiB); the rest is room for a transaction's framing.
MAX_RECORD_BYTES = 960_000
# The records of one priority's topic (a lane) fetched and waiting in the runner, past which it
# stops fetching that lane: a bound on memory, not on latency (stream/lanes.py).
LANE_BACKLOG = 2048
# A stage that handles jobs in batches has each of a batch's jobs in hand for the whole batch:
# a thousand proofs take a few hundred milliseconds, and anchoring a root (one request, its
# whole batch's jobs) a transaction's round trips; RUNNING_STATUS_AFTER_S's tenth of a second
# gave most of them a `running` status nobody could see (8,636 prove and 2,096 to 7,752 anchor
# `running` statuses for 10,000 anchor jobs: up to four fifths more statuses for the projector
# and PostgreSQL). Their jobs show `running` once their batch has run this long (a slow chain).
BATCHED_RUNNING_AFTER_S = 1.0


def holds_batches(handler: StageHandler) -> bool:
    """A batched handler, or one whose every request is a batch's jobs (the anchor stage's)."""
    return handler.batched or handler.consumes is AnchorRequested


def running_after_s(setting: float, *, batched: bool) -> float:
    """How long a stage holds a job's `running` status before publishing it: the setting, at
    least BATCHED_RUNNING_AFTER_S for a stage of batches; 0 (every job's) stays 0."""
    if setting <= 0 or not batched:
        return setting
    return max(setting, BATCHED_RUNNING_AFTER_S)


@dataclass(frozen=True)
class Incoming:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0
    headers: dict[str, bytes] = field(default_factory=dict)

    @property
    def attempt(self) -> int:
        return headers.lenient(headers.attempt, self.headers, 1)

    def origin(self) -> list[Header]:
        """Where the message first came from: kept across retries, as Spring does."""
        if headers.ORIGINAL_TOPIC in self.headers:
            return [(name, self.headers[name]) for name in headers.ORIGIN if name in self.headers]
        return [
            (headers.ORIGINAL_TOPIC, self.topic.encode()),
            (headers.ORIGINAL_PARTITION, str(self.partition).encode()),
            (headers.ORIGINAL_OFFSET, str(self.offset).encode()),
            (headers.DLT_ORIGINAL_TIMESTAMP, str(self.timestamp_ms).encode()),
        ]


@dataclass(frozen=True)
class RetryPolicy:
    """How often a message is tried, and how long it waits in a delay topic before each retry."""

    max_attempts: int = 4
    ladder: tuple[float, ...] = (5.0, 30.0, 300.0)

    def level(self, attempt: int) -> int:
        """The delay topic (1-based) a message goes to after failing `attempt`."""
        return min(attempt, len(self.ladder))

    def delay(self, attempt: int) -> float:
        return self.ladder[self.level(attempt) - 1]


def dead_letter_headers(message: Incoming, exc: BaseException, *, attempts: int) -> list[Header]:
    """Spring Kafka's dead-letter header names, values as UTF-8 text."""
    carried = (
        [(headers.GENERATIONS, message.headers[headers.GENERATIONS])]
        if (headers.GENERATIONS in message.headers)
        else []
    )
    return [
        *headers.failure(exc),
        *message.origin(),
        (headers.ATTEMPTS, str(attempts).encode()),
        *carried,
    ]


def _nothing(job_ids: Iterable[str]) -> None:
    """No `running` statuses held to drop."""


def _none(job_id: str, generation: int) -> bool:
    """No job is cancelled (the notifier, and a processor without cancellations)."""
    return False


class MessageProcessor:
    """Turns one batch of incoming messages into the messages to produce with its offsets."""

    def __init__(
        self,
        handler: StageHandler,
        *,
        topics: Topics,
        retry: RetryPolicy,
        publish_now: Callable[[JobStatus], None],
        finished: Callable[[Iterable[str]], None] = _nothing,
        announce: Callable[[str, Callable[[], JobStatus]], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        max_record_bytes: int = MAX_RECORD_BYTES,
        codec: Codec = SINGLE_OBJECT,
        cancelled: Callable[[str, int], bool] = _none,
        time_limit_s: float = 0.0,
        batch_budget_s: float = 0.0,
        tracer: Tracer = IDS_ONLY,
    ) -> None:
        self.handler = handler
        self.tracer = tracer
        self.spans = BatchSpans(tracer, name=f"{handler.stage} process")
        self.codec = codec
        self.cancelled = cancelled
        self.time_limit_s = time_limit_s  # 0: a handler call takes as long as it takes
        self.batch_budget_s = batch_budget_s
        self.limiter = TimeLimit()
        self.batch_ends = 0.0
        self.topics = topics
        self.retry = retry
        self.publish_now = publish_now
        self.finished = finished  # the jobs whose handler call returned (running.py)
        # A job now in hand, with how to make its `running` status: made only if it is published
        # (running.py holds it; most jobs end first, and a status each was 3 % of the verifier).
        self.announce = announce or (lambda _job_id, make: publish_now(make()))
        self.clock = clock
        self.max_record_bytes = max_record_bytes
        self.failed_jobs = 0  # statuses `failed` encoded since the runner last took the count

    def process(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        """The batch's output, each record carrying the traceparent of the span of the record
        it came from (tracing.py)."""
        self.spans = spans = BatchSpans(self.tracer, name=f"{self.handler.stage} process")
        for message in batch:
            spans.start(
                _place(message), headers=message.headers, key=message.key, topic=message.topic
            )
        try:
            out = self._process(batch)
            for item in out:
                spans.stamp(item.key, item.headers)
            return out
        finally:
            spans.end()

    def _process(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        self.batch_ends = time.monotonic() + self.batch_budget_s
        out: list[Outgoing] = []
        decoded: list[tuple[Incoming, Any]] = []
        for message in batch:
            event = None
            try:
                event = check_refs(decode(self.codec, message.value, self.handler.consumes))
                headers.check(message.headers)
            except Retryable as exc:  # the schema registry did not answer: not the record's fault
                out.extend(self._retry_or_die(message, None, exc))
                continue
            except Exception as exc:  # Poison, or whatever else one hostile record provokes
                log.warning(
                    "dead-lettering %s: %.200s", _where(message), exc, extra=_about(message, event)
                )
                out.extend(self._dead_letter([(message, event)], exc))
                continue
            self.spans.about(_place(message), (ref.job_id for ref in refs_of(event)))
            if self._all_cancelled(message, event):
                out.extend(self._skip(message, event))
                continue
            decoded.append((message, event))
        if isinstance(self.handler, Prefetching):  # never raises; only saves requests
            self.handler.prefetch([event for _, event in decoded])
        if self.handler.batched or not self.time_limit_s:
            groups = [decoded] if self.handler.batched else [[item] for item in decoded]
            for group in groups:
                if group:
                    out.extend(self._run(group))
        else:
            out.extend(self._run_each(decoded))
        return [fit(item, max_bytes=self.max_record_bytes) for item in out]

    def _all_cancelled(self, message: Incoming, event: Any) -> bool:
        """Whether every job of the record was cancelled in the run it belongs to (an anchor
        batch is anchored while one of its jobs still wants it)."""
        refs = self._refs(message, event)
        return bool(refs) and all(self.cancelled(ref.job_id, ref.generation) for ref in refs)

    def _skip(self, message: Incoming, event: Any) -> list[Outgoing]:
        note = f"skipped by the {self.handler.stage} stage: the job was cancelled"
        return [
            self.encode(
                ref.status(
                    self.handler.stage, StageState.CANCELLED, attempt=message.attempt, note=note
                )
            )
            for ref in self._refs(message, event)
        ]

    def give_up(self, message: Incoming, *, deliveries: int) -> list[Outgoing]:
        """Dead letters for a record that was `deliveries` times in the hands of a process that
        ended before committing it: handling it again would end this one too."""
        reason = Poison(
            f"delivered {deliveries} times and never committed: each time, the process "
            "handling it ended (ANCHORLINE_MAX_DELIVERIES)"
        )
        event = None
        with contextlib.suppress(Exception):
            event = check_refs(decode(self.codec, message.value, self.handler.consumes))
        log.warning("dead-lettering %s: %s", _where(message), reason, extra=_about(message, event))
        letters = self._dead_letter([(message, event)], reason)
        return [fit(item, max_bytes=self.max_record_bytes) for item in letters]

    def _run(self, group: list[tuple[Incoming, Any]], *, announce: bool = True) -> list[Outgoing]:
        """The group's output; if anything about it fails, each record's own, run alone, so that
        one bad record fails, retries or dies by itself and never with another job's error."""
        if self.time_limit_s and time.monotonic() >= self.batch_ends:
            return self._defer(group)
        jobs = self._jobs(group)
        try:
            if announce:
                self._announce(jobs)
            results = self._handle([event for _, event in group], self._reporter(jobs))
            self.finished(jobs)
            return self._outputs(results, jobs)
        except Exception as exc:  # of any type: a bug or a library's, as much as ours
            if len(group) > 1:  # still in hand, each job of it, till its own call returns
                log.warning("a group of %d failed (%.200s); one at a time now", len(group), exc)
                return [out for one in group for out in self._run([one], announce=False)]
            self.finished(jobs)
            message, event = group[0]
            return self._failure(message, event, exc)

    def _run_each(self, decoded: list[tuple[Incoming, Any]]) -> list[Outgoing]:
        """As `_run` for each record alone, all handed to the time limiter's thread at once
        (a hand-over each was a tenth of a verify job's CPU), each under its own limit."""
        jobs = [self._jobs([item]) for item in decoded]

        def work(event: Any, held: dict[str, tuple[Incoming, JobRef]]) -> Sequence[Event]:
            self._announce(held)
            try:
                return self.handler.handle([event], self._reporter(held))
            finally:
                self.finished(held)

        calls = [
            functools.partial(work, event, held)
            for (_, event), held in zip(decoded, jobs, strict=True)
        ]
        outcomes = self.limiter.call_each(
            calls,
            limit_s=self.time_limit_s,
            ends=self.batch_ends,
            what=f"the {self.handler.stage} stage's handler",
        )
        out: list[Outgoing] = []
        for (message, event), held, outcome in zip(decoded, jobs, outcomes, strict=True):
            if outcome is DEFERRED:
                out.extend(self._defer([(message, event)]))
                continue
            try:
                if isinstance(outcome, BaseException):
                    raise outcome
                out.extend(self._outputs(cast(Sequence[Event], outcome), held))
            except Exception as exc:  # of any type: a bug or a library's, as much as ours
                out.extend(self._failure(message, event, exc))
        return out

    def _jobs(self, group: list[tuple[Incoming, Any]]) -> dict[str, tuple[Incoming, JobRef]]:
        return {
            ref.job_id: (message, ref)
            for message, event in group
            for ref in self._refs(message, event)
        }

    def _handle(self, events: list[Any], report: Report) -> Sequence[Event]:
        """The handler's output, or StageTimeout past the stage's limit (or what is left of
        the batch's budget, whichever ends first)."""
        if not self.time_limit_s:
            return self.handler.handle(events, report)
        limit_s = min(self.time_limit_s, self.batch_ends - time.monotonic())
        return self.limiter.call(
            lambda: self.handler.handle(events, report),
            limit_s=limit_s,
            what=f"the {self.handler.stage} stage's handler",
        )

    def _defer(self, group: list[tuple[Incoming, Any]]) -> list[Outgoing]:
        """The records back at the end of their partition as they came (attempt, generations):
        the batch has no time left for them, which is no failure of theirs."""
        log.info("no time left in this batch; %d records go round again", len(group))
        return [
            Outgoing(
                message.topic, message.key, message.value or b"", list(message.headers.items())
            )
            for message, _ in group
        ]

    def _announce(self, jobs: dict[str, tuple[Incoming, JobRef]]) -> None:
        stage = self.handler.stage
        for message, ref in jobs.values():
            running = functools.partial(
                ref.status, stage, StageState.RUNNING, attempt=message.attempt, progress=0
            )
            self.announce(ref.job_id, running)

    def _outputs(
        self, results: Sequence[Event], jobs: dict[str, tuple[Incoming, JobRef]]
    ) -> list[Outgoing]:
        generation = {job_id: ref.generation for job_id, (_, ref) in jobs.items()}
        attempt = {job_id: message.attempt for job_id, (message, _) in jobs.items()}
        out = [
            self.encode(self._stamp(event, generation, attempt), generation) for event in results
        ]
        for item in out:
            size = record_size(item)
            if size > self.max_record_bytes:
                raise OutputTooLarge(
                    f"the {self.handler.stage} stage's output for {item.key!r} on {item.topic} "
                    f"is {size} bytes, over the record limit of {self.max_record_bytes}"
                )
        return out

    def _failure(self, message: Incoming, event: Any, exc: Exception) -> list[Outgoing]:
        if isinstance(exc, Permanent):
            refs = self._refs(message, event)
            return [self.encode(self._failed(ref, exc, message.attempt)) for ref in refs]
        if isinstance(exc, Poison):
            return self._dead_letter([(message, event)], exc)
        return self._retry_or_die(message, event, exc)  # Retryable, and anything unexpected

    def _refs(self, message: Incoming, event: Any) -> list[JobRef]:
        if event is None:  # not decoded yet (the schema registry did not answer)
            return []
        known = headers.known_generations(message.headers)
        return [replace(ref, generation=known.get(ref.job_id, 0)) for ref in refs_of(event)]

    @staticmethod
    def _stamp(event: Event, generation: dict[str, int], attempt: dict[str, int]) -> Event:
        """A handler's status, with the run and attempt it belongs to (handlers know neither):
        without the attempt, an outcome after a retry would rank below its own `running`."""
        if isinstance(event, JobStatus):
            return replace(
                event,
                generation=generation.get(event.job_id, event.generation),
                attempt=attempt.get(event.job_id, event.attempt),
            )
        return event

    def _reporter(self, jobs: dict[str, tuple[Incoming, JobRef]]) -> Callable[[JobRef, int], None]:
        def report(ref: JobRef, percent: int) -> None:
            message, known = jobs.get(ref.job_id, (None, ref))
            attempt = message.attempt if message else 1
            status = known.status(
                self.handler.stage, StageState.RUNNING, attempt=attempt, progress=percent
            )
            self.publish_now(status)

        return report

    def _failed(self, ref: JobRef, exc: Exception, attempt: int) -> JobStatus:
        return ref.status(
            self.handler.stage,
            StageState.FAILED,
            attempt=attempt,
            error=headers.reason(exc),
            error_class=type(exc).__name__,
        )

    def _retry_or_die(self, message: Incoming, event: Any, exc: Exception) -> list[Outgoing]:
        attempt = message.attempt
        if attempt >= self.retry.max_attempts:
            log.warning(
                "dead-lettering %s after %d attempts: %s",
                *(_where(message), attempt, exc),
                extra=_about(message, event),
            )
            return self._dead_letter([(message, event)], exc)
        due = self.clock() + timedelta(seconds=self.retry.delay(attempt))
        log.info(
            "attempt %d of %s failed (%.200s); next at %s",
            *(attempt, _where(message), exc, due),
            extra=_about(message, event),
        )
        retry_headers = [
            *headers.failure(exc),
            *message.origin(),
            (headers.ATTEMPTS, str(attempt + 1).encode()),
            (headers.DUE, str(int(due.timestamp() * 1000)).encode()),
            *[
                (name, message.headers[name])
                for name in (headers.GENERATIONS,)
                if name in message.headers
            ],
        ]
        source = self.topics.request_topic(self.handler.stage)
        out = [
            Outgoing(
                self.topics.retry(source, self.retry.level(attempt)),
                message.key,
                message.value or b"",
                retry_headers,
            )
        ]
        for ref in self._refs(message, event):
            retrying = ref.status(
                self.handler.stage,
                StageState.RETRYING,
                attempt=attempt,
                error=headers.reason(exc),
                error_class=type(exc).__name__,
                next_attempt_at=due,
            )
            out.append(self.encode(retrying))
        return out

    def _dead_letter(
        self, group: Sequence[tuple[Incoming, Any]], exc: BaseException
    ) -> list[Outgoing]:
        out: list[Outgoing] = []
        for message, event in group:
            letter_headers = dead_letter_headers(message, exc, attempts=message.attempt)
            out.append(
                Outgoing(
                    self.topics.dead_letter(self.topics.request_topic(self.handler.stage)),
                    message.key,
                    message.value or b"",
                    letter_headers,
                )
            )
            for ref in self._refs(message, event) if event is not None else []:
                dead = ref.status(
                    self.handler.stage,
                    StageState.DEAD,
                    attempt=message.attempt,
                    error=headers.reason(exc),
                    error_class=type(exc).__name__,
                )
                out.append(self.encode(dead))
        return out

    def encode(self, event: Event, generation: Mapping[str, int] | None = None) -> Outgoing:
        """The message for an event, its jobs' replay generations in a header."""
        if isinstance(event, JobStatus):
            carried = {event.job_id: event.generation}
            if event.state is StageState.FAILED:
                self.failed_jobs += 1
        else:
            known = generation or {}
            carried = {ref.job_id: known.get(ref.job_id, 0) for ref in refs_of(event)}
        return Outgoing(
            self.topics.for_event(event),
            key_of(event).encode(),
            self.codec.encode(event),
            headers.encode_generations(carried),
        )


def _idle(halt: threading.Event) -> None:
    halt.wait()


def _heads(batch: list[Message]) -> dict[Place, int]:
    """Where each partition's part of the batch starts."""
    heads: dict[Place, int] = {}
    for message in batch:
        heads.setdefault(place_of(message), message.offset() or 0)
    return heads


def fit(item: Outgoing, *, max_bytes: int) -> Outgoing:
    """The record, or if it is too large to produce (a copy of a huge incoming record to a retry
    or dead-letter topic) the same without its value, and if need be without the long headers
    and key it copied: never one that fails a whole transaction with MSG_SIZE_TOO_LARGE."""
    size = record_size(item)
    if size <= max_bytes:
        return item
    log.warning("dropping the value of a %d-byte record to %s: too large", size, item.topic)
    dropped = (headers.VALUE_DROPPED, str(len(item.value)).encode())
    slim = replace(item, value=b"", headers=[*item.headers, dropped])
    if record_size(slim) > max_bytes:
        short = [(name, v) for name, v in slim.headers if len(v or b"") <= headers.MAX_TEXT]
        slim = replace(slim, key=(item.key or b"")[: headers.MAX_TEXT], headers=short)
    return slim


def record_size(item: Outgoing) -> int:
    """What a record weighs against the producer's message.max.bytes, framing aside."""
    extras = sum(len(name) + len(value or b"") for name, value in item.headers)
    return len(item.key or b"") + len(item.value) + extras


def _place(message: Incoming) -> tuple[str, int, int]:
    return (message.topic, message.partition, message.offset)


def _where(message: Incoming) -> str:
    return f"{message.topic}[{message.partition}]@{message.offset}"


def _about(message: Incoming, event: Any) -> dict[str, object]:
    """A log line's job ids: the event's, else the record's key (cut: it is outside input)."""
    ids = [ref.job_id for ref in refs_of(event)] if event is not None else []
    if not ids and message.key:
        ids = [message.key[:64].decode("utf-8", "replace")]
    if not ids:
        return {}
    return {"job_id": ids[0]} if len(ids) == 1 else {"job_ids": ids}


def incoming(message: Message) -> Incoming:
    _, timestamp = message.timestamp()
    return Incoming(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value(),
        timestamp_ms=timestamp,
        headers=headers.as_map(message.headers()),
    )


class StageRunner:
    """Runs one stage against Kafka until `stop` is set, exactly once per batch.

    Beside the stage's own consumer runs its delay forwarder, which returns messages
    from the stage's retry topics to the stage when they are due.
    """

    def __init__(
        self,
        handler: StageHandler,
        settings: Settings,
        *,
        service: str,
        poll_batch: int | None = None,
    ) -> None:
        self.handler = handler
        self.service = service
        self.topics = settings.topics
        self.source = self.topics.request_topic(handler.stage)
        unbatched = poll_batch or settings.poll_batch
        self.max_batch = settings.batch_max_jobs if handler.batched else unbatched
        self.max_wait = settings.batch_max_wait_s if handler.batched else 0.0
        self.loop = ExactlyOnce(settings, group_id=f"anchorline-{service}", service=service)
        self.status_producer = Producer(producer_config(settings))
        self.forwarder = DelayForwarder(
            settings, service=service, source=self.source, lanes=self.topics.lanes(handler.stage)
        )
        self.running = RunningStatuses(
            self._publish_now,
            after_s=running_after_s(
                settings.running_status_after_s, batched=holds_batches(handler)
            ),
        )
        self.codec = codec_for(settings)
        # A pipeline stage skips cancelled jobs; the notifier announces them.
        self.cancellations = Cancellations(settings) if handler.stage in PIPELINE else None
        self.processor = MessageProcessor(
            handler,
            topics=self.topics,
            retry=RetryPolicy(settings.max_attempts, settings.retry_ladder),
            publish_now=self.running.report,
            finished=self.running.finished,
            announce=self.running.announce,
            max_record_bytes=settings.max_record_bytes,
            codec=self.codec,
            cancelled=self.cancellations.is_cancelled if self.cancellations else _none,
            time_limit_s=settings.stage_timeout_s(handler.stage),
            batch_budget_s=settings.handling_deadline_s * BATCH_BUDGET_SHARE,
            tracer=tracer_for(settings, service=service),
        )
        # What was fetched from the stage's topics (one a priority), taken by their weights.
        self.pending = Lanes(
            self.topics.lanes(handler.stage),
            bound=max(LANE_BACKLOG, 2 * self.max_batch),
            weights=settings.priority_weight_map,
        )
        self.pending_since = 0.0
        # Handling a batch longer than this ends the process (stack dump, exit 70) before its
        # consumer exceeds max.poll.interval.ms (a minute later) and holds partitions it lost.
        self.handling = Watchdog(settings.handling_deadline_s)
        self.deliveries = DeliveryLog(settings, sources=self.pending.topics)
        self.max_deliveries = settings.max_deliveries
        self.metrics = StageMetrics(handler.stage, topics=self.topics, source=self.source)
        # Records a producer wrote twice (resends.py): committed, not handled again.
        self.committed_records = CommittedRecords()

    def _publish_now(self, status: JobStatus) -> None:
        try:
            value = self.codec.encode(status)
        except Retryable as exc:  # the schema registry: a running status only informs
            log.warning("running status of %s not published: %s", status.job_id, exc)
            return
        self.status_producer.produce(
            self.topics.job_status,
            key=status.job_id.encode(),
            value=value,
            headers=self.processor.spans.stamp(
                status.job_id.encode(),
                headers.encode_generations({status.job_id: status.generation}),
            ),
        )
        self.status_producer.poll(0)

    def run(self, stop: threading.Event) -> None:
        # The helper threads stop when this loop ends, however it ends: on `stop` alone, a loop
        # that raised waited 30 s for each of them, still running, before the process could exit.
        halt = threading.Event()
        forwarder = threading.Thread(target=self.forwarder.run, args=(halt,), name="delay")
        ticker = threading.Thread(target=self.running.run, args=(halt,), name="running")
        follow = self.cancellations.run if self.cancellations else _idle
        cancels = threading.Thread(target=follow, args=(halt,), name="cancels")
        try:
            forwarder.start()
            ticker.start()
            cancels.start()
            self.loop.start(self.pending.topics, on_revoke=self._on_revoke)
            log.info("%s consuming %s", self.service, ", ".join(self.pending.topics))
            while not stop.is_set():
                self._poll_once()
            self.flush()
        finally:
            halt.set()
            ticker.join(30)
            self.handling.stop()
            self.deliveries.close()
            self.status_producer.flush(10)
            self.loop.close()
            forwarder.join(30)
            cancels.join(30)
            self.processor.limiter.close()
            if isinstance(self.handler, Closing):
                self.handler.close()
            self.codec.close()
            self.processor.tracer.close()

    def _poll_once(self) -> None:
        # All the consumer has fetched (up to the lanes' bound), not a batch's worth: a record
        # of another priority must never wait in librdkafka's queue behind a flood of one; and
        # no waiting for more records while some wait here.
        waiting = len(self.pending)
        timeout = 0.0 if waiting and not self.max_wait else 0.2
        messages = self.loop.poll(limit=self.pending.bound, timeout=timeout)
        if messages and not waiting:
            self.pending_since = time.monotonic()
        self.pending.add(messages)
        self.pending.throttle(self.loop.consumer)
        due = time.monotonic() - self.pending_since >= self.max_wait
        if self.pending and (len(self.pending) >= self.max_batch or due):
            self.flush()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.flush()
        places = [(p.topic, p.partition) for p in partitions]
        self._forget(places)  # the rest of what they had waiting is their next owner's
        self.deliveries.forget(places)
        self.committed_records.forget(places)

    def _forget(self, places: Iterable[Place]) -> None:
        paused = self.pending.forget(places)
        if paused:
            self.loop.consumer.resume(paused)

    def flush(self) -> None:
        """Process the pending messages and commit their output and offsets in one transaction;
        records whose delivery ended a process before go one at a time (deliveries.py)."""
        if not self.pending:
            return
        batch = self.pending.take(self.max_batch)
        counts = self.deliveries.begin(_heads(batch))
        again = [message for message in batch if counts[place_of(message)] > 1]
        fresh = [message for message in batch if counts[place_of(message)] == 1]
        if fresh and not self._handle(fresh):
            self._rolled_back(counts, again)
            return
        started: set[Place] = set()
        for index, message in enumerate(again):
            place = place_of(message)
            if place in started:
                counts.update(self.deliveries.begin({place: message.offset() or 0}))
            started.add(place)
            if not self._handle([message], deliveries=counts[place]):
                # From this message on: a seek per partition, the last one standing, so the rest
                # alone would seek past it (a record skipped, its job stuck: found in CI).
                self._rolled_back(counts, again[index:])
                return

    def _rolled_back(self, counts: dict[Place, int], unhandled: list[Message]) -> None:
        """A commit was rolled back in this living process: what was counted is delivered again
        without a death, and `unhandled` (the rolled-back batch among them if it shares their
        partitions) is polled again from the first of it in each partition."""
        self.deliveries.retract(counts)
        self.loop.rewind(unhandled)
        self._forget(counts)  # what waits of the rewound partitions comes again

    def _handle(self, batch: list[Message], *, deliveries: int = 1) -> bool:
        """Handle and commit one batch; False if its transaction was rolled back."""
        records = [incoming(message) for message in batch]
        self.processor.failed_jobs = 0
        started = time.monotonic()
        marks: list[Mark] = []
        places = list(dict.fromkeys((record.topic, record.partition) for record in records))
        taken_over = self.committed_records.unknown(places)
        if taken_over:  # what their last owner committed last (resends.py)
            self.committed_records.recall({p: "" for p in taken_over} | self.loop.notes(taken_over))
        if deliveries > self.max_deliveries:
            outgoing = self.processor.give_up(records[0], deliveries=deliveries - 1)
        else:
            fresh, resent, marks = self.committed_records.fresh(records)
            for record in resent:
                log.warning("skipping %s: the same record was committed before", _where(record))
            with self.handling.guard("handling a batch"):
                outgoing = self.processor.process(fresh) if fresh else []
        handled_s = time.monotonic() - started
        self.running.settle()
        self.status_producer.flush(30)
        notes = self.committed_records.notes(places, marks)
        committed = self.loop.commit(batch, outgoing, notes)
        if committed:
            self.committed_records.committed(marks)
            self.metrics.committed(
                records=len(records),
                outgoing=outgoing,
                failed=self.processor.failed_jobs,
                seconds=handled_s,
            )
        return committed
