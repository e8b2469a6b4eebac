from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from confluent_kafka import KafkaError, KafkaException

from anchorline.settings import Settings
from anchorline_projector.service import Projector
from anchorline_projector.store import SqlJobStore


class RefusingConsumer:
    """A consumer whose group coordinator is away: every commit fails."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.commits = 0

    def commit(self, asynchronous: bool = True) -> None:
        self.commits += 1
        raise KafkaException(KafkaError(self.code, "Commit failed"))


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
        projector._commit()
    assert consumer.commits == 1
    assert "offsets not committed" in caplog.text
