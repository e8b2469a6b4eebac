"""The runner with a codec whose schema registry does not answer: the record waits, whole."""

from __future__ import annotations

import socket
import time

import pytest
from test_runner import NOW, SOURCE, TOPICS, FakeHandler, message

from anchorline.errors import Retryable
from anchorline.events import Event, JobStatus
from anchorline.stream.registry_codec import RegistryCodec, registry_client
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


def test_a_registry_that_takes_a_request_and_never_answers_is_retryable_in_bounded_time() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        host, port = silent.getsockname()
        codec = RegistryCodec(
            registry_client(f"http://{host}:{port}", timeout_s=0.3, retries=1), TOPICS
        )
        started = time.monotonic()
        with pytest.raises(Retryable, match="did not answer"):
            codec.decode_any(b"\x00" + (7).to_bytes(4, "big") + b"\x02")
        assert time.monotonic() - started < 5
        codec.close()
