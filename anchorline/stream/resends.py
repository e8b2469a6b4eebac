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

The memory outlives its process: each transaction commits, with a partition's offset, the
digests of its last NOTED records as the offset's metadata (`notes`), and a process that takes a
partition over reads them back (`recall`) before it handles its first record there. So a copy
that reaches the partition's next owner is caught too, when no more than NOTED records of the
partition lie between it and its first copy (librdkafka sends the copy right after its epoch
bump, so only other producers' records come between).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from anchorline.stream.topics import Place

# Per partition: a resend follows its first copy within a producer's message timeout, so a few
# thousand records of a partition is far past it at any rate this machine can take.
REMEMBERED_PER_PARTITION = 4096
# Committed with each partition's offset: 32 digests of 12 bytes are 512 characters of base64,
# well within the broker's offset.metadata.max.bytes (4,096 by default; a commit over it fails).
NOTED = 32
DIGEST_BYTES = 12
NOTES_PREFIX = "resends1:"

log = logging.getLogger(__name__)


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
    MiB a partition would be gigabytes), each part length-prefixed so none runs into the next.
    96 bits: two different records of a partition's last few thousand share one with a
    probability under 2^-70."""
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
    return hashlib.blake2b(framed, digest_size=DIGEST_BYTES).digest()


Mark = tuple[Place, bytes]


class CommittedRecords:
    """The fingerprints of the last REMEMBERED_PER_PARTITION committed records of each partition
    this process owns; a partition it took over starts from the notes its last owner committed."""

    def __init__(self, per_partition: int = REMEMBERED_PER_PARTITION, noted: int = NOTED) -> None:
        self.per_partition = per_partition
        self.noted = noted
        self.seen: dict[Place, OrderedDict[bytes, None]] = {}

    def unknown(self, places: Iterable[Place]) -> list[Place]:
        """The partitions whose committed notes have not been recalled since they became ours."""
        return [place for place in places if place not in self.seen]

    def recall(self, notes: Mapping[Place, str]) -> None:
        """Start each partition from the notes committed with its offset (`notes`: what the
        broker holds, so checked, and ignored with a warning when they are not ours)."""
        for place, text in notes.items():
            seen = self.seen.setdefault(place, OrderedDict())
            for mark in _digests(place, text)[-self.per_partition :]:
                seen[mark] = None

    def forget(self, places: Iterable[Place]) -> None:
        """These partitions are no longer ours: their next owner commits more of them, and they
        are recalled from the broker if they come back."""
        for place in places:
            self.seen.pop(place, None)

    def notes(self, places: Iterable[Place], marks: Sequence[Mark] = ()) -> dict[Place, str]:
        """The metadata to commit with each partition's offset: the digests of its last `noted`
        records once `marks` are committed too, oldest first."""
        pending: dict[Place, list[bytes]] = {}
        for place, mark in marks:
            pending.setdefault(place, []).append(mark)
        notes = {}
        for place in places:
            recent = pending.get(place, [])[-self.noted :]
            seen = self.seen.get(place)
            if seen and len(recent) < self.noted:
                older = [m for m in _newest(seen, self.noted) if m not in recent]
                recent = older[-(self.noted - len(recent)) :] + recent
            notes[place] = NOTES_PREFIX + base64.b64encode(b"".join(recent)).decode("ascii")
        return notes

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


def _newest(seen: OrderedDict[bytes, None], count: int) -> list[bytes]:
    """The last `count` marks of `seen`, oldest first."""
    newest: list[bytes] = []
    for mark in reversed(seen):
        if len(newest) == count:
            break
        newest.append(mark)
    newest.reverse()
    return newest


def _digests(place: Place, text: str) -> list[bytes]:
    """The digests in committed notes; none (and a warning) for metadata that is not notes."""
    if not text:
        return []  # a partition never committed, or committed by something else
    raw: bytes | None = None
    if text.startswith(NOTES_PREFIX) and len(text) <= 4 * NOTED * DIGEST_BYTES:
        with contextlib.suppress(binascii.Error, ValueError):
            raw = base64.b64decode(text[len(NOTES_PREFIX) :], validate=True)
    if raw is None or len(raw) % DIGEST_BYTES:
        log.warning("offset metadata of %s[%d] is not resend notes; ignored", *place)
        return []
    return [raw[i : i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES)]
