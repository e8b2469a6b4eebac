from __future__ import annotations

import base64

import pytest

from anchorline.stream.resends import DIGEST_BYTES, NOTES_PREFIX, CommittedRecords
from anchorline.stream.runner import Incoming


def record(offset: int, *, partition: int = 0, attempt: bytes = b"1", at: int = 1000) -> Incoming:
    return Incoming(
        topic="requests",
        partition=partition,
        offset=offset,
        key=b"job-1",
        value=b"the request",
        timestamp_ms=at,
        headers={"anchorline-attempt": attempt},
    )


def commit(records: CommittedRecords, batch: list[Incoming]) -> None:
    records.committed(records.fresh(batch)[2])


def test_a_copy_of_a_committed_record_is_a_resend() -> None:
    records = CommittedRecords()
    commit(records, [record(59)])
    kept, resent, _ = records.fresh([record(60), record(61, partition=1)])
    assert [r.offset for r in resent] == [60]
    assert [(r.partition, r.offset) for r in kept] == [(1, 61)]  # another partition's: its own


def test_a_copy_within_one_batch_is_a_resend() -> None:
    kept, resent, _ = CommittedRecords().fresh([record(59), record(60)])
    assert [r.offset for r in kept] == [59] and [r.offset for r in resent] == [60]


def test_a_retry_or_a_later_send_of_the_same_request_is_handled() -> None:
    records = CommittedRecords()
    commit(records, [record(59)])
    kept, resent, _ = records.fresh([record(70, attempt=b"2"), record(71, at=2000)])
    assert [r.offset for r in kept] == [70, 71] and not resent


def test_a_batch_rolled_back_is_handled_again() -> None:
    records = CommittedRecords()
    kept, _, _ = records.fresh([record(59)])  # its transaction aborted: never committed()
    assert kept == [record(59)]
    assert records.fresh([record(59)])[:2] == ([record(59)], [])


def test_it_remembers_a_bounded_number_of_records_a_partition() -> None:
    records = CommittedRecords(per_partition=2)
    commit(records, [record(1, at=1), record(2, at=2), record(3, at=3)])
    kept, resent, _ = records.fresh([record(4, at=1), record(5, at=3)])
    assert [r.offset for r in kept] == [4] and [r.offset for r in resent] == [5]


def test_it_keeps_a_digest_of_each_record_not_its_bytes() -> None:
    records = CommittedRecords()
    commit(records, [Incoming("requests", 0, 1, b"k", b"x" * 1_000_000, 1000, {})])
    (kept,) = records.seen[("requests", 0)]
    assert len(kept) == DIGEST_BYTES
    # Parts are length-prefixed: moving bytes from the key into the value is another record.
    moved = Incoming("requests", 0, 2, b"", b"k" + b"x" * 1_000_000, 1000, {})
    assert records.fresh([moved])[:2] == ([moved], [])


PLACE = ("requests", 0)


def test_the_notes_of_one_owner_tell_the_next_what_it_committed_last() -> None:
    before = CommittedRecords()
    _, _, marks = before.fresh([record(59), record(60, at=2000)])
    notes = before.notes([PLACE], marks)
    after = CommittedRecords()
    assert after.unknown([PLACE]) == [PLACE]
    after.recall(notes)
    assert after.unknown([PLACE]) == []
    kept, resent, _ = after.fresh([record(61), record(62, at=3000)])
    assert [r.offset for r in resent] == [61] and [r.offset for r in kept] == [62]


def test_the_notes_hold_the_last_records_of_the_partition_newest_kept() -> None:
    records = CommittedRecords(noted=3)
    commit(records, [record(n, at=n) for n in range(5)])
    _, _, marks = records.fresh([record(5, at=5)])
    notes = records.notes([PLACE, ("requests", 1)], marks)
    after = CommittedRecords()
    after.recall(notes)
    kept, resent, _ = after.fresh([record(10 + n, at=n) for n in range(6)])
    assert [r.timestamp_ms for r in resent] == [3, 4, 5]
    assert [r.timestamp_ms for r in kept] == [0, 1, 2]
    assert notes[("requests", 1)] == NOTES_PREFIX  # a partition of the batch with nothing known


@pytest.mark.parametrize(
    "metadata",
    [
        "a consumer's own note",
        NOTES_PREFIX + "not base64!",
        NOTES_PREFIX + base64.b64encode(b"x" * (DIGEST_BYTES + 1)).decode(),
        NOTES_PREFIX + "A" * 100_000,
    ],
)
def test_offset_metadata_that_is_not_notes_is_ignored(metadata: str) -> None:
    records = CommittedRecords()
    records.recall({PLACE: metadata})
    assert records.unknown([PLACE]) == []  # asked once; nothing remembered
    assert records.fresh([record(1)])[:2] == ([record(1)], [])


def test_a_partition_forgotten_is_recalled_again() -> None:
    records = CommittedRecords()
    commit(records, [record(1)])
    records.forget([PLACE])
    assert records.unknown([PLACE]) == [PLACE]
