from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from anchorline.settings import Settings
from anchorline_projector import service
from anchorline_projector.service import Projector, _on_commit
from anchorline_projector.store import SqlJobStore


class RefusingConsumer:
    """A consumer whose group coordinator is away: every commit fails."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.commits = 0

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.commits += 1
        raise KafkaException(KafkaError(self.code, "Commit failed"))


class RecordingConsumer:
    """Keeps each commit: its offsets as (topic, partition, offset), and whether it waited."""

    def __init__(self) -> None:
        self.commits: list[tuple[set[tuple[str, int, int]], bool]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.commits.append(({(o.topic, o.partition, o.offset) for o in offsets}, asynchronous))


class StatusMessage:
    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def topic(self) -> str:
        return "status"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


def recording_projector() -> tuple[Projector, RecordingConsumer]:
    projector = Projector(
        Settings(kafka_bootstrap="127.0.0.1:1"), SqlJobStore(sa.create_engine("sqlite://"))
    )
    projector.consumer.close()
    consumer = RecordingConsumer()
    projector.consumer = consumer  # type: ignore[assignment]
    return projector, consumer


@pytest.mark.parametrize("code", [KafkaError.UNKNOWN_MEMBER_ID, KafkaError._WAIT_COORD])
def test_a_refused_offset_commit_does_not_stop_the_projector(
    code: int, caplog: pytest.LogCaptureFixture
) -> None:
    projector = Projector(
        Settings(kafka_bootstrap="127.0.0.1:1"), SqlJobStore(sa.create_engine("sqlite://"))
    )
    consumer = RefusingConsumer(code)
    projector.consumer.close()
    projector.consumer = consumer  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING):
        projector._commit([StatusMessage(0, 1)])  # type: ignore[list-item]
    assert consumer.commits == 1
    assert "offsets not committed" in caplog.text


def test_an_applied_batch_commits_past_its_messages_without_waiting() -> None:
    projector, consumer = recording_projector()
    batch = [StatusMessage(0, 7), StatusMessage(1, 3), StatusMessage(0, 8)]
    projector._commit(batch)  # type: ignore[arg-type]
    assert consumer.commits == [({("status", 0, 9), ("status", 1, 4)}, True)]


def test_batches_applied_within_a_commit_interval_are_committed_together_when_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(service.time, "monotonic", lambda: now[0])
    projector, consumer = recording_projector()
    projector._commit([StatusMessage(0, 7)])  # type: ignore[list-item]
    projector._commit([StatusMessage(1, 3)])  # type: ignore[list-item]
    projector._commit([StatusMessage(0, 8)])  # type: ignore[list-item]
    assert consumer.commits == [({("status", 0, 8)}, True)] and projector.uncommitted
    now[0] += service.COMMIT_EVERY_S
    projector._commit([])  # idle, and the interval is over: what was applied since
    assert consumer.commits[-1] == ({("status", 0, 9), ("status", 1, 4)}, True)
    assert not projector.uncommitted


def test_stopping_waits_for_a_commit_of_all_applied_but_what_was_revoked() -> None:
    projector, consumer = recording_projector()
    projector._commit([StatusMessage(0, 7), StatusMessage(1, 3), StatusMessage(2, 5)])  # type: ignore[list-item]
    projector._on_revoke(projector.consumer, [TopicPartition("status", 1)])  # type: ignore[arg-type]
    projector._commit([], asynchronous=False)
    assert consumer.commits[-1] == ({("status", 0, 8), ("status", 2, 6)}, False)


def test_nothing_applied_commits_nothing() -> None:
    projector, consumer = recording_projector()
    projector._commit([], asynchronous=False)
    assert consumer.commits == []


def test_an_asynchronous_commit_the_broker_refuses_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        _on_commit(KafkaError(KafkaError.REBALANCE_IN_PROGRESS), [TopicPartition("status", 0)])
        _on_commit(None, [TopicPartition("status", 0, 3)])
    assert caplog.text.count("offsets not committed") == 1
