"""The runner with a codec whose schema registry does not answer: the record waits, whole."""

from __future__ import annotations

from test_runner import NOW, SOURCE, TOPICS, FakeHandler, message

from anchorline.errors import Retryable
from anchorline.events import Event, JobStatus
from anchorline.stream.runner import MessageProcessor, RetryPolicy
from anchorline.stream.topics import Topics


class RegistryAway:
    """A codec that cannot resolve a Confluent frame's schema id right now."""

    def encode(self, event: Event) -> bytes:
        raise AssertionError("nothing is encoded for a record that waits")

    def decode_any(self, data: bytes | None) -> Event:
        raise Retryable("the schema registry did not answer for 7")

    def close(self) -> None:
        """Nothing to release."""


def processor(topics: Topics, published: list[JobStatus]) -> MessageProcessor:
    return MessageProcessor(
        FakeHandler(),
        topics=topics,
        retry=RetryPolicy(max_attempts=3, ladder=(5.0, 30.0)),
        publish_now=published.append,
        clock=lambda: NOW,
        codec=RegistryAway(),
    )


def test_a_record_the_registry_cannot_resolve_now_is_retried_not_dead_lettered() -> None:
    published: list[JobStatus] = []
    framed = b"\x00\x00\x00\x00\x07\x02body"
    (retry,) = processor(TOPICS, published).process([message(framed)])
    assert retry.topic == TOPICS.retry(SOURCE, 1)
    assert retry.value == framed
    headers = dict(retry.headers)
    assert headers["retry_topic-attempts"] == b"2"
    assert b"schema registry did not answer" in headers["kafka_dlt-exception-message"]
    assert published == []  # no job known yet: no status about it
