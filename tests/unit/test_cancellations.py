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
