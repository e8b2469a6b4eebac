"""The compiled Avro reader against fastavro's: whatever it reads, fastavro reads the same."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import fastavro
import pytest
from avro_events import ANY_EVENT, PLAIN_EVENT
from hypothesis import given, settings
from hypothesis import strategies as st

from anchorline.errors import SerializationError
from anchorline.events import JobKind, JobStatus, Stage, StageState
from anchorline.stream import codec
from anchorline.stream.avro_reader import Fallback, Unsupported, compile_reader, read_long


def slow(data: bytes) -> Any:
    """What fastavro and the codec make of a message: the event, or SerializationError."""
    try:
        return codec.decode_with_fastavro(data)
    except SerializationError:
        return SerializationError


def fast(data: bytes) -> Any:
    """What the compiled reader makes of it: the event, or None where it leaves it."""
    reader = codec._schemas().readers[data[2 : codec.HEADER_SIZE]]
    try:
        return reader(data)
    except (Fallback, IndexError, UnicodeDecodeError, OverflowError):
        return None


def frames(events: st.SearchStrategy[Any] = ANY_EVENT) -> st.SearchStrategy[bytes]:
    """Messages of every type as fastavro writes them (events it refuses left out)."""

    def frame(event: Any) -> bytes | None:
        try:
            return codec.encode_with_fastavro(event)
        except SerializationError:
            return None

    return events.map(frame).filter(lambda data: data is not None)  # type: ignore[return-value]


@settings(max_examples=400, deadline=None)
@given(frames())
def test_every_message_fastavro_wrote_is_read_as_fastavro_reads_it(data: bytes) -> None:
    ours = fast(data)
    assert ours is None or ours == slow(data)
    assert codec.decode_any(data) == slow(data)


@settings(max_examples=200, deadline=None)
@given(frames(PLAIN_EVENT))
def test_every_message_a_stage_writes_is_read_by_the_compiled_reader(data: bytes) -> None:
    ours, theirs = fast(data), slow(data)
    assert ours == theirs != SerializationError
    assert (type(ours), repr(ours)) == (type(theirs), repr(theirs))


@settings(max_examples=800, deadline=None)
@given(frames(), st.data())
def test_a_damaged_message_it_reads_is_one_fastavro_reads_the_same(
    data: bytes, draw: st.DataObject
) -> None:
    body = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        at = draw.draw(st.integers(codec.HEADER_SIZE, len(body)))
        change = draw.draw(st.sampled_from(["set", "insert", "cut"]))
        byte = draw.draw(st.integers(0, 255))
        if change == "set" and at < len(body):
            body[at] = byte
        elif change == "insert":
            body.insert(at, byte)
        else:
            del body[at:]
    damaged = bytes(body)
    ours = fast(damaged)
    if ours is not None:
        assert ours == slow(damaged)
    theirs = slow(damaged)
    if theirs is SerializationError:
        with pytest.raises(SerializationError):
            codec.decode_any(damaged)
    else:
        assert codec.decode_any(damaged) == theirs


STATUS = JobStatus(
    job_id="job-1", kind=JobKind.VERIFY, stage=Stage.VERIFY, state=StageState.QUEUED, event_id="e"
)
KIND_AT = codec.HEADER_SIZE + len(b"\x02e" + b"\x0ajob-1")  # the body: event_id, job_id, kind


@pytest.mark.parametrize(
    "index",
    [
        0x7F,  # -64, which a Python list would wrap round
        0x01,  # -1
        0x08,  # 4, past its symbols
    ],
)
def test_an_enum_index_out_of_range_is_left_to_fastavro(index: int) -> None:
    data = bytearray(codec.encode(STATUS))
    assert fast(bytes(data)) == STATUS
    data[KIND_AT] = index
    assert fast(bytes(data)) is None


def test_a_varint_past_64_bits_is_left_to_fastavro() -> None:
    with pytest.raises(Fallback):
        read_long(b"\xff" * 10 + b"\x01", 0)
    with pytest.raises(Fallback):
        read_long(b"\xff" * 9 + b"\x7f", 0)
    assert read_long(b"\xfe" + b"\xff" * 8 + b"\x01", 0) == (2**63 - 1, 10)


def test_a_message_with_bytes_after_its_record_is_still_refused() -> None:
    data = codec.encode(STATUS) + b"\x00"
    assert fast(data) is None
    with pytest.raises(SerializationError, match="bytes after"):
        codec.decode_any(data)


def test_every_event_type_has_a_compiled_reader() -> None:
    schemas = codec._schemas()
    assert set(schemas.readers) == {schemas.fingerprints[kind] for kind in codec.EVENT_TYPES}


@pytest.mark.parametrize(
    "kind",
    [
        "double",
        {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]},
        ["null", "string", "int"],
        {"type": "int", "logicalType": "date"},
        {"type": "map", "values": "long"},
        "field name",  # not an Avro name: never written into the compiled source
    ],
    ids=repr,
)
def test_a_schema_with_a_type_it_does_not_read_is_left_to_fastavro(kind: Any) -> None:
    field = (
        {"name": "x) or (y", "type": "int"} if kind == "field name" else {"name": "x", "type": kind}
    )
    schema = fastavro.parse_schema({"type": "record", "name": "R", "fields": [field]})
    make = Bare if kind == "field name" else One
    with pytest.raises(Unsupported, match=r"^(type|union|logical type|field name) "):
        compile_reader(schema, {}, make=make, head=0, members={})


def test_the_same_schema_with_types_it_reads_compiles() -> None:
    schema = fastavro.parse_schema(
        {"type": "record", "name": "R", "fields": [{"name": "x", "type": ["null", "long"]}]}
    )
    read = compile_reader(schema, {}, make=One, head=0, members={})
    assert vars(read(b"\x02\x54")) == {"x": 42}


def test_an_event_type_with_a_field_the_schema_lacks_is_left_to_its_init() -> None:
    schema = fastavro.parse_schema({"type": "record", "name": "R", "fields": []})
    with pytest.raises(Unsupported, match="lacks"):
        compile_reader(schema, {}, make=JobStatus, head=0, members={})


@dataclass(frozen=True)
class One:
    """An event type of one field, x."""

    x: Any


@dataclass(frozen=True)
class Bare:
    """An event type of no fields."""
