"""The projector when the schema registry does not answer: it waits, as for its database."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from confluent_kafka import Message

from anchorline.errors import Retryable
from anchorline.events import Event, JobKind, JobStatus, Stage, StageState
from anchorline.settings import Settings
from anchorline.stream import codec
from anchorline_projector.service import Projector
from anchorline_projector.store import SqlJobStore

STATUS = JobStatus(job_id="j1", kind=JobKind.VERIFY, stage=Stage.VERIFY, state=StageState.QUEUED)


class FlakyRegistry:
    """A registry codec that does not answer `failures` times, then decodes."""

    def __init__(self, failures: int, stop: threading.Event | None = None) -> None:
        self.failures = failures
        self.stop = stop
        self.calls = 0

    def encode(self, event: Event) -> bytes:
        return codec.encode(event)

    def decode_any(self, data: bytes | None) -> Event:
        self.calls += 1
        if self.calls <= self.failures:
            if self.stop is not None:
                self.stop.set()  # asked to stop while the registry is away
            raise Retryable("the schema registry did not answer for 7")
        return codec.decode_any(data)

    def close(self) -> None:
        """Nothing to release."""


@pytest.fixture
def projector() -> Iterator[Projector]:
    projector = Projector(
        Settings(kafka_bootstrap="127.0.0.1:1"), SqlJobStore(sa.create_engine("sqlite://"))
    )
    yield projector
    projector.consumer.close()


def a_message() -> Message:
    return Message(topic="anchorline.job.status", partition=0, offset=3, value=codec.encode(STATUS))


def test_a_status_waits_for_the_registry_instead_of_being_dead_lettered(
    projector: Projector,
) -> None:
    projector.codec = FlakyRegistry(failures=2)
    dead: list[Message] = []
    projector._dead_letter = lambda message, exc: dead.append(message)  # type: ignore[method-assign]
    assert projector._decode(a_message(), threading.Event()) == STATUS
    assert dead == []


def test_stopping_while_the_registry_is_away_applies_and_commits_nothing(
    projector: Projector,
) -> None:
    stop = threading.Event()
    projector.codec = FlakyRegistry(failures=1, stop=stop)
    assert projector._apply([a_message()], [], stop) is False  # so the offsets are not committed
