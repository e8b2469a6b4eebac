"""Records a producer sent twice: skipped once the first copy is committed.

An idempotent producer can still write a record twice. librdkafka times out a produce request in
flight (the broker it went to is taking over leaderships), bumps the producer's epoch and sends
the message again under the new one, where the broker cannot tell it from a new message: the
same key, value, headers and timestamp at two offsets of one partition (found by the leader-kill
fault test: a request of the gateway at offsets 59 and 60, epochs 4 and 5, sequence 0 both). A
stage that handled both would commit its outcome twice. So a stage remembers what each
partition's recent committed records were, and a record byte for byte the same as one of them,
or as an earlier one of its own batch, is committed without being handled. A retry, a replay or
a new run of a job differs in its headers (attempt, generation) or timestamp, so it is handled.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar

from anchorline.stream.topics import Place

# Per partition: a resend follows its first copy within a producer's message timeout, so a few
# thousand records of a partition is far past it at any rate this machine can take.
REMEMBERED_PER_PARTITION = 4096


class Record(Protocol):
    """What of a consumed record (runner.Incoming) makes it the same as another."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp_ms(self) -> int: ...
    @property
    def headers(self) -> dict[str, bytes]: ...


R = TypeVar("R", bound=Record)


def fingerprint(record: Record) -> tuple[Any, ...]:
    return (record.key, record.value, record.timestamp_ms, tuple(sorted(record.headers.items())))


class CommittedRecords:
    """The fingerprints of the last REMEMBERED_PER_PARTITION committed records of each partition."""

    def __init__(self, per_partition: int = REMEMBERED_PER_PARTITION) -> None:
        self.per_partition = per_partition
        self.seen: dict[Place, OrderedDict[tuple[Any, ...], None]] = {}

    def fresh(self, records: Sequence[R]) -> tuple[list[R], list[R]]:
        """(the records to handle, the resends to skip): a record is a resend if a committed
        record of its partition, or an earlier record of `records`, is the same."""
        kept: list[R] = []
        resent: list[R] = []
        batch: set[tuple[Place, tuple[Any, ...]]] = set()
        for record in records:
            place = (record.topic, record.partition)
            mark = fingerprint(record)
            if mark in self.seen.get(place, ()) or (place, mark) in batch:
                resent.append(record)
            else:
                batch.add((place, mark))
                kept.append(record)
        return kept, resent

    def committed(self, records: Iterable[Record]) -> None:
        """`records` are committed: their copies, if they come, are resends."""
        for record in records:
            seen = self.seen.setdefault((record.topic, record.partition), OrderedDict())
            seen[fingerprint(record)] = None
            if len(seen) > self.per_partition:
                seen.popitem(last=False)
