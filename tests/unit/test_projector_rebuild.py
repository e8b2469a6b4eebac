from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anchorline.errors import IncompleteRead
from anchorline.events import StageState
from anchorline.settings import Settings
from anchorline.store.db import jobs
from anchorline.stream import codec
from anchorline_projector import rebuild as rebuild_module
from anchorline_projector.rebuild import BATCH, rebuild
from anchorline_projector.store import SqlJobStore


class Stored:
    """What rebuild reads of a message: its value and headers."""

    def __init__(self, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        self._value = value
        self._headers = headers

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


def test_a_rebuild_cut_short_says_how_far_it_got(
    engine: Engine, make_status: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [make_status(StageState.QUEUED, job_id=f"job-{n}") for n in range(BATCH + 10)]

    def read_then_stall(settings: Settings, topic: str) -> Iterator[Stored]:
        yield Stored(b"not avro")
        for event in events:
            yield Stored(codec.encode(event))
        raise IncompleteRead(f"could not read {topic} to its end: no progress for 30 s")

    monkeypatch.setattr(rebuild_module, "read_to_end", read_then_stall)
    with pytest.raises(IncompleteRead) as raised:
        rebuild(Settings(kafka_bootstrap="127.0.0.1:1"), SqlJobStore(engine))
    message = str(raised.value)
    assert "could not read anchorline.job.status to its end" in message
    assert f"holds only the {BATCH} events read before that: run the rebuild again" in message
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(jobs)).scalar() == BATCH


def test_a_whole_read_rebuilds_every_job_and_counts_the_undecodable(
    engine: Engine, make_status: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [make_status(StageState.QUEUED, job_id=f"job-{n}") for n in range(5)]

    def read(settings: Settings, topic: str) -> Iterator[Stored]:
        yield Stored(b"not avro")
        for event in events:
            yield Stored(codec.encode(event))

    monkeypatch.setattr(rebuild_module, "read_to_end", read)
    assert rebuild(Settings(kafka_bootstrap="127.0.0.1:1"), SqlJobStore(engine)) == (5, 1)
