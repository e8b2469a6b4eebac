from __future__ import annotations

from datetime import UTC, datetime

import pytest

from anchorline.stream.cancellations import CancelledJobs, cancel_record, parse_record

AT = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def test_a_record_the_gateway_writes_reads_back() -> None:
    key, value = cancel_record("job-1", generation=3, at=AT)
    assert parse_record(key, value) == ("job-1", 3)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"job-1", b"not json"),
        (b"job-1", b'{"generation": "3"}'),
        (b"job-1", b'{"generation": -1}'),
        (b"job-1", b'{"generation": 1000001}'),
        (b"job-1", b'{"generation": true}'),
        (b"job-1", b"[1]"),
        (b"job-1", b'{"generation": 1, "pad": "' + b"x" * 300 + b'"}'),
        (b"job/../1", b'{"generation": 1}'),
        (None, b'{"generation": 1}'),
        (b"job-1", None),
    ],
)
def test_a_record_no_gateway_wrote_is_ignored(key: bytes | None, value: bytes | None) -> None:
    assert parse_record(key, value) is None


def test_a_cancellation_covers_its_run_and_earlier_ones_only() -> None:
    jobs = CancelledJobs()
    jobs.add("a", 2)
    jobs.add("a", 1)  # an older record read after a newer one does not shrink it
    assert jobs.is_cancelled("a", 0) and jobs.is_cancelled("a", 2)
    assert not jobs.is_cancelled("a", 3)
    assert not jobs.is_cancelled("b", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_cancellation_older_than_the_retention_is_forgotten() -> None:
    clock = Clock()
    jobs = CancelledJobs(keep_s=100, clock=clock)
    jobs.add("old", 0, at=clock.now - 101)  # read at start, past the retention: not taken
    jobs.add("a", 0, at=clock.now - 50)
    jobs.add("b", 1)
    assert not jobs.is_cancelled("old", 0)
    assert jobs.is_cancelled("a", 0) and jobs.is_cancelled("b", 1)
    clock.now += 60
    assert jobs.expire() == 1
    assert not jobs.is_cancelled("a", 0) and jobs.is_cancelled("b", 1)
    assert set(jobs.runs) == {"b"}


def test_a_forged_future_time_does_not_keep_a_cancellation_for_ever() -> None:
    clock = Clock()
    jobs = CancelledJobs(keep_s=100, clock=clock)
    jobs.add("a", 0, at=clock.now + 10**9)
    clock.now += 101
    assert jobs.expire() == 1
    assert jobs.runs == {}


def test_a_later_run_cancelled_is_kept_with_its_own_time() -> None:
    clock = Clock()
    jobs = CancelledJobs(keep_s=100, clock=clock)
    jobs.add("a", 0)
    clock.now += 90
    jobs.add("a", 1)
    clock.now += 20
    assert jobs.expire() == 0
    assert jobs.is_cancelled("a", 1)
