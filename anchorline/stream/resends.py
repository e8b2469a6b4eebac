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

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

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


def fingerprint(record: Record) -> bytes:
    """A digest of what the producer sent (not the bytes themselves: 4,096 records of up to a
    MiB a partition would be gigabytes), each part length-prefixed so none runs into the next."""
    parts = [
        record.key or b"",
        record.value or b"",
        str(record.timestamp_ms).encode(),
        *(
            part
            for name, value in sorted(record.headers.items())
            for part in (name.encode(), value)
        ),
    ]
    framed = b"".join(len(part).to_bytes(8, "big") + part for part in parts)
    return hashlib.blake2b(framed, digest_size=16).digest()


Mark = tuple[Place, bytes]


class CommittedRecords:
    """The fingerprints of the last REMEMBERED_PER_PARTITION committed records of each partition."""

    def __init__(self, per_partition: int = REMEMBERED_PER_PARTITION) -> None:
        self.per_partition = per_partition
        self.seen: dict[Place, OrderedDict[bytes, None]] = {}

    def fresh(self, records: Sequence[R]) -> tuple[list[R], list[R], list[Mark]]:
        """(the records to handle, the resends to skip, the marks of all to give `committed`
        once their transaction commits): a record is a resend if a committed record of its
        partition, or an earlier record of `records`, is the same."""
        kept: list[R] = []
        resent: list[R] = []
        marks: list[Mark] = []
        batch: set[Mark] = set()
        for record in records:
            mark = ((record.topic, record.partition), fingerprint(record))
            marks.append(mark)
            if mark[1] in self.seen.get(mark[0], ()) or mark in batch:
                resent.append(record)
            else:
                batch.add(mark)
                kept.append(record)
        return kept, resent, marks

    def committed(self, marks: Iterable[Mark]) -> None:
        """The records of these marks are committed: their copies, if they come, are resends."""
        for place, mark in marks:
            seen = self.seen.setdefault(place, OrderedDict())
            seen[mark] = None
            if len(seen) > self.per_partition:
                seen.popitem(last=False)
