"""Dead letters: read them back, filter them, and replay them into the stage they died in.

A replay returns the original bytes to the original topic with no attempt count (so the
retry ladder starts again) and every job of the message one generation higher; a `queued`
status with a note records the replay in each job's history. Each replayed letter is
recorded in the compacted replay log, so replaying it again does nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from anchorline import codec, headers
from anchorline.errors import Poison
from anchorline.events import Event, Stage, StageState, refs_of, utcnow
from anchorline.headers import Header
from anchorline.kafka import producer_config
from anchorline.settings import Settings
from anchorline.topics import Topics

STATUS = "status"
IDLE_LIMIT_S = 10.0


def stages(topics: Topics) -> dict[str, str]:
    """Stage name → its dead-letter topic."""
    letters = {str(stage): topics.dead_letter(topics.request_topic(stage)) for stage in Stage}
    return {**letters, STATUS: topics.dead_letter(topics.job_status)}


@dataclass(frozen=True)
class DeadLetter:
    stage: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    timestamp: datetime

    @property
    def coordinates(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def error(self) -> str:
        return headers.text(self.headers, headers.EXCEPTION_MESSAGE)

    @property
    def error_class(self) -> str:
        return headers.text(self.headers, headers.EXCEPTION_FQCN).rsplit(".", 1)[-1]

    @property
    def original_topic(self) -> str:
        return headers.text(self.headers, headers.ORIGINAL_TOPIC) or self.topic.removesuffix(".dlq")

    @property
    def attempts(self) -> int:
        return headers.number(self.headers, headers.ATTEMPTS, 0)

    def event(self) -> Event | None:
        try:
            return codec.decode_any(self.value)
        except Poison:
            return None

    def job_ids(self) -> list[str]:
        event = self.event()
        return [ref.job_id for ref in refs_of(event)] if event is not None else []

    def summary(self) -> dict[str, object]:
        return {
            "coordinates": self.coordinates,
            "stage": self.stage,
            "key": (self.key or b"").decode("utf-8", "replace"),
            "job_ids": self.job_ids(),
            "attempts": self.attempts,
            "error_class": self.error_class,
            "error": self.error,
            "original_topic": self.original_topic,
            "timestamp": self.timestamp.isoformat(),
        }


@dataclass(frozen=True)
class LetterFilter:
    """Which dead letters a command is about; every given criterion must hold."""

    job_id: str | None = None
    error: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, letter: DeadLetter) -> bool:
        if self.job_id and self.job_id not in {*letter.job_ids(), (letter.key or b"").decode()}:
            return False
        if self.error and self.error.lower() not in f"{letter.error_class} {letter.error}".lower():
            return False
        if self.since and letter.timestamp < self.since:
            return False
        return not (self.until and letter.timestamp > self.until)


def _reader(settings: Settings) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"anchorline-dlq-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )


def _read_all(settings: Settings, topic: str) -> Iterator[tuple[TopicPartition, object]]:
    """Every committed message of a topic, from the start to the end it has now."""
    consumer = _reader(settings)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        ends: dict[int, int] = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                ends[partition] = high
        if not ends:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        idle_since = time.monotonic()
        # Transaction markers take offsets too, so the end is reached by position, not by message.
        while ends and time.monotonic() - idle_since < IDLE_LIMIT_S:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                idle_since = time.monotonic()
                partition, offset = message.partition() or 0, message.offset() or 0
                if offset < ends.get(partition, 0):
                    yield TopicPartition(topic, partition, offset), message
            for place in consumer.position([TopicPartition(topic, p) for p in ends]):
                if place.offset >= ends[place.partition]:
                    del ends[place.partition]
    finally:
        consumer.close()


def read_letters(settings: Settings, stage: str | None = None) -> Iterator[DeadLetter]:
    for name, topic in stages(settings.topics).items():
        if stage and name != stage:
            continue
        for place, message in _read_all(settings, topic):
            _, millis = message.timestamp()  # type: ignore[attr-defined]
            yield DeadLetter(
                stage=name,
                topic=topic,
                partition=place.partition,
                offset=place.offset,
                key=message.key(),  # type: ignore[attr-defined]
                value=message.value() or b"",  # type: ignore[attr-defined]
                headers=headers.as_map(message.headers()),  # type: ignore[attr-defined]
                timestamp=datetime.fromtimestamp(millis / 1000, UTC),
            )


def replayed(settings: Settings) -> set[str]:
    """Coordinates of the dead letters already replayed."""
    return {
        (message.key() or b"").decode()  # type: ignore[attr-defined]
        for _, message in _read_all(settings, settings.topics.replay_log)
    }


def find(settings: Settings, coordinates: str) -> DeadLetter | None:
    topic = coordinates.rsplit(":", 2)[0]
    stage = next((name for name, t in stages(settings.topics).items() if t == topic), None)
    if stage is None:
        return None
    letters = read_letters(settings, stage)
    return next((one for one in letters if one.coordinates == coordinates), None)


def replay_messages(
    letter: DeadLetter, topics: Topics, *, now: datetime
) -> list[tuple[str, bytes | None, bytes, list[Header]]]:
    """What replaying one letter produces: (topic, key, value, headers) for each message."""
    event = letter.event()
    known = headers.generations(letter.headers)
    refs = refs_of(event) if event is not None else []
    bumped = {ref.job_id: known.get(ref.job_id, 0) + 1 for ref in refs}
    note = f"replayed from {letter.coordinates}"
    replay_headers = [
        *headers.encode_generations(bumped),
        (headers.REPLAY_OF, letter.coordinates.encode()),
    ]
    out = [(letter.original_topic, letter.key, letter.value, replay_headers)]
    if letter.stage != STATUS:
        for ref in refs:
            again = replace(ref, generation=bumped[ref.job_id])
            queued = again.status(
                Stage(letter.stage), StageState.QUEUED, occurred_at=now, note=note
            )
            out.append(
                (
                    topics.job_status,
                    ref.job_id.encode(),
                    codec.encode(queued),
                    headers.encode_generations({ref.job_id: queued.generation}),
                )
            )
    record = json.dumps({"replayed_at": now.isoformat(), "to": letter.original_topic}).encode()
    out.append((topics.replay_log, letter.coordinates.encode(), record, []))
    return out


class Replayer:
    """Replays dead letters in transactions, at most `rate` per second."""

    def __init__(
        self, settings: Settings, *, rate: float = 50.0, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.settings = settings
        self.rate = rate
        self.sleep = sleep
        # One fixed transactional id: a second replay running at once fences the first.
        self.producer = Producer(
            producer_config(settings, transactional_id=f"{settings.topic_prefix}-dlq-replay")
        )
        self.producer.init_transactions(30)

    def replay(self, letters: Iterable[DeadLetter], progress: Callable[[DeadLetter], None]) -> int:
        count = 0
        started = time.monotonic()
        for letter in letters:
            self.producer.begin_transaction()
            for topic, key, value, extra in replay_messages(
                letter, self.settings.topics, now=utcnow()
            ):
                self.producer.produce(topic, key=key, value=value, headers=extra)
            self.producer.commit_transaction(30)
            count += 1
            progress(letter)
            ahead = count / self.rate - (time.monotonic() - started)
            if ahead > 0:
                self.sleep(ahead)
        return count
