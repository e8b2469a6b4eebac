"""A job keeps its priority's topic through a stage's retries, its dead letter and a replay."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from test_runner import NOW, FakeHandler, Harness, headers_of, requested

from anchorline.errors import Retryable
from anchorline.events import JobRequested, Priority, ProveRequested, Stage
from anchorline.stream import codec
from anchorline.stream.dlq import DeadLetter, replay_messages
from anchorline.stream.runner import Incoming
from anchorline.stream.topics import Topics

TOPICS = Topics("t")
HIGH = TOPICS.lane(TOPICS.jobs_requested, Priority.HIGH)


def urgent(job_id: str) -> JobRequested:
    return replace(requested(job_id), priority=Priority.HIGH)


def test_a_high_job_retries_through_the_shared_delay_topic_naming_its_own_topic() -> None:
    harness = Harness(FakeHandler(Retryable("rpc down")), max_attempts=2)
    value = codec.encode(urgent("a"))
    first = harness.process(Incoming(HIGH, 1, 5, b"a", value, 1714564800000))
    (delay,) = [item for item in first if ".retry." in item.topic]
    assert delay.topic == "t.jobs.requested.retry.1", "one set of delay topics for every priority"
    assert headers_of(delay)["kafka_dlt-original-topic"] == HIGH
    back = Incoming(HIGH, 1, 9, b"a", value, 1714564800000, dict(delay.headers))  # type: ignore[arg-type]
    # (the delay forwarder returns it to HIGH: test_delay.py)
    harness.processor.handler.errors.append(Retryable("rpc still down"))  # type: ignore[attr-defined]
    last = harness.process(back)
    (letter,) = [item for item in last if item.topic.endswith(".dlq")]
    assert letter.topic == "t.jobs.requested.dlq"
    assert headers_of(letter)["kafka_dlt-original-topic"] == HIGH
    dead = DeadLetter(
        stage=str(Stage.VERIFY),
        topic=letter.topic,
        partition=0,
        offset=0,
        key=letter.key,
        value=letter.value,
        headers=dict(letter.headers),  # type: ignore[arg-type]
        timestamp=datetime(2024, 5, 1, tzinfo=UTC),
    )
    replayed = replay_messages(dead, TOPICS, now=NOW)
    assert replayed[0][0] == HIGH, "a replay goes back to the topic of the job's priority"


def test_a_stage_writes_the_next_request_to_the_topic_of_the_jobs_priority() -> None:
    class Carrying(FakeHandler):
        def handle(self, events, report):  # type: ignore[no-untyped-def]
            out = super().handle(events, report)
            return [
                replace(e, priority=events[0].priority) if isinstance(e, ProveRequested) else e
                for e in out
            ]

    out = Harness(Carrying()).process(Incoming(HIGH, 1, 5, b"a", codec.encode(urgent("a"))))
    assert [item.topic for item in out] == ["t.job.status", "t.prove.requested.high"]
    (status,) = [codec.decode_any(item.value) for item in out if item.topic == "t.job.status"]
    assert status.priority is Priority.HIGH  # type: ignore[union-attr]
