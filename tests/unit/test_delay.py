from __future__ import annotations

from dataclasses import dataclass

import pytest

from anchorline.events import Stage
from anchorline.settings import Settings
from anchorline.stream.delay import DelayForwarder, Hold, split_due


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    due_ms: int | bytes | None
    written_ms: int = 0

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, self.written_ms)

    def headers(self) -> list[tuple[str, bytes]]:
        if self.due_ms is None:
            return []
        raw = self.due_ms if isinstance(self.due_ms, bytes) else str(self.due_ms).encode()
        return [("retry_topic-backoff-timestamp", raw)]


def test_due_messages_go_and_an_early_one_holds_only_its_partition() -> None:
    now = 1_000.0
    messages = [
        FakeMessage("r", 0, 10, 999_000),  # due
        FakeMessage("r", 0, 11, 1_005_000),  # early: holds partition 0 here
        FakeMessage("r", 0, 12, 999_500),  # behind the held one: waits for the resume
        FakeMessage("r", 1, 40, 1_000_000),  # due exactly now, on another partition
        FakeMessage("r", 1, 41, None),  # no due header: due at once
    ]
    ready, holds = split_due(messages, now=now, held=set())  # type: ignore[arg-type]
    assert [(m.partition(), m.offset()) for m in ready] == [(0, 10), (1, 40), (1, 41)]
    assert holds == {("r", 0): Hold(offset=11, due=1_005.0)}


def test_an_already_held_partition_forwards_nothing() -> None:
    messages = [FakeMessage("r", 0, 11, 0), FakeMessage("r", 1, 3, 0)]
    ready, holds = split_due(messages, now=5.0, held={("r", 0)})  # type: ignore[arg-type]
    assert [(m.partition(), m.offset()) for m in ready] == [(1, 3)]
    assert holds == {}


def test_a_forged_far_off_due_date_holds_no_longer_than_the_longest_delay() -> None:
    messages = [FakeMessage("r", 0, 1, 10**18, written_ms=990_000)]
    _, holds = split_due(messages, now=1_000.0, held=set(), max_wait_s=300)  # type: ignore[arg-type]
    assert holds == {("r", 0): Hold(offset=1, due=1_290.0)}


def test_a_malformed_due_date_is_due_at_once() -> None:
    messages = [FakeMessage("r", 0, 1, b"9" * 400), FakeMessage("r", 1, 1, b"soon")]
    ready, holds = split_due(messages, now=1.0, held=set(), max_wait_s=300)  # type: ignore[arg-type]
    assert len(ready) == 2 and holds == {}


@dataclass
class RetriedMessage:
    origin: bytes | None

    def key(self) -> bytes:
        return b"job-1"

    def value(self) -> bytes:
        return b"record"

    def headers(self) -> list[tuple[str, bytes]]:
        return [("kafka_dlt-original-topic", self.origin)] if self.origin is not None else []


def forwarder() -> DelayForwarder:
    """A forwarder whose consumer never connects (nothing here polls)."""
    settings = Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="t")
    topics = settings.topics
    lanes = topics.lanes(Stage.VERIFY)
    made = DelayForwarder(settings, service="verifier", source=topics.jobs_requested, lanes=lanes)
    made.loop.close()
    return made


@pytest.mark.parametrize(
    ("origin", "back_to"),
    [
        (b"t.jobs.requested.high", "t.jobs.requested.high"),
        (b"t.jobs.requested.low", "t.jobs.requested.low"),
        (b"t.jobs.requested", "t.jobs.requested"),
        (None, "t.jobs.requested"),
        (b"t.prove.requested.high", "t.jobs.requested"),  # not this stage's: never elsewhere
        (b"\xff\xfe", "t.jobs.requested"),
    ],
)
def test_a_due_retry_goes_back_to_the_topic_of_its_priority(
    origin: bytes | None, back_to: str
) -> None:
    returned = forwarder()._returned(RetriedMessage(origin))  # type: ignore[arg-type]
    assert (returned.topic, returned.key, returned.value) == (back_to, b"job-1", b"record")
