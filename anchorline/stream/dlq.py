"""Dead letters: read them back, filter them, and replay them into the stage they died in.

A replay returns the original bytes to the original topic with no attempt count (so the
retry ladder starts again) and every job of the message one generation higher; a `queued`
status with a note records the replay in each job's history. Each replayed letter is
recorded in the compacted replay log, so replaying it again does nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from confluent_kafka import Producer

from anchorline.errors import Poison
from anchorline.events import Event, Stage, StageState, refs_of, utcnow
from anchorline.settings import Settings
from anchorline.stream import codec, headers, tracing
from anchorline.stream.headers import Header
from anchorline.stream.kafka import producer_config
from anchorline.stream.registry_codec import SINGLE_OBJECT, Codec, codec_for
from anchorline.stream.topic_reader import read_to_end
from anchorline.stream.topics import Topics

STATUS = "status"


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
    # (the event,) as read with the installation's codec (a schema registry's, maybe);
    # None: decode the value with the single-object codec when asked.
    decoded: tuple[Event | None] | None = field(default=None, compare=False, repr=False)

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
        return headers.lenient(headers.attempt, self.headers, 0)

    def event(self) -> Event | None:
        if self.decoded is not None:
            return self.decoded[0]
        return _event(SINGLE_OBJECT, self.value)

    def job_ids(self) -> list[str]:
        event = self.event()
        return [ref.job_id for ref in refs_of(event)] if event is not None else []

    def summary(self) -> dict[str, object]:
        return {
            "coordinates": self.coordinates,
            "stage": self.stage,
            "key": _text(self.key),
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
        if self.job_id and self.job_id not in {*letter.job_ids(), _text(letter.key)}:
            return False
        if self.error and self.error.lower() not in f"{letter.error_class} {letter.error}".lower():
            return False
        if self.since and letter.timestamp < self.since:
            return False
        return not (self.until and letter.timestamp > self.until)


def _text(key: bytes | None) -> str:
    """A key as text; anyone may have written it, so it need not be UTF-8."""
    return (key or b"").decode("utf-8", "replace")


def read_letters(settings: Settings, stage: str | None = None) -> Iterator[DeadLetter]:
    """Every dead letter (of one stage), each decoding with the settings' codec."""
    codec_ = codec_for(settings)
    try:
        yield from _letters(settings, stage, codec_)
    finally:
        codec_.close()


def _letters(settings: Settings, stage: str | None, codec_: Codec) -> Iterator[DeadLetter]:
    for name, topic in stages(settings.topics).items():
        if stage and name != stage:
            continue
        for message in read_to_end(settings, topic):
            _, millis = message.timestamp()  # type: ignore[attr-defined]
            yield DeadLetter(
                stage=name,
                topic=topic,
                partition=message.partition() or 0,
                offset=message.offset() or 0,
                key=message.key(),  # type: ignore[attr-defined]
                value=message.value() or b"",  # type: ignore[attr-defined]
                headers=headers.as_map(message.headers()),  # type: ignore[attr-defined]
                timestamp=datetime.fromtimestamp(millis / 1000, UTC),
                decoded=(_event(codec_, message.value()),),  # type: ignore[attr-defined]
            )


def _event(codec_: Codec, value: bytes | None) -> Event | None:
    """The event a letter holds, or None if it does not decode (a registry that does not
    answer raises Retryable: then nothing can be said about the letter)."""
    try:
        return codec_.decode_any(value)
    except Poison:
        return None


def replayed(settings: Settings) -> set[str]:
    """Coordinates of the dead letters already replayed."""
    return {
        _text(message.key())  # type: ignore[attr-defined]
        for message in read_to_end(settings, settings.topics.replay_log)
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
    known = headers.known_generations(letter.headers)
    refs = refs_of(event) if event is not None else []
    bumped = {ref.job_id: known.get(ref.job_id, 0) + 1 for ref in refs}
    note = f"replayed from {letter.coordinates}"
    context = tracing.of_headers(letter.headers)  # the replay continues the job's trace
    replay_headers = [
        *headers.encode_generations(bumped),
        (headers.REPLAY_OF, letter.coordinates.encode()),
        *([(tracing.TRACEPARENT, context.traceparent.encode())] if context else []),
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
                    codec.encode(queued),  # single-object: every consumer reads it
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
