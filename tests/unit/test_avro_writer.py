"""The compiled Avro writer against fastavro's: the same bytes for every event, the same
refusals."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest
from avro_events import ANY_EVENT, INTEGERS
from hypothesis import given, settings

from anchorline.errors import SerializationError
from anchorline.events import JobKind, JobStatus, Stage, StageState
from anchorline.stream import codec
from anchorline.stream.avro_writer import Fallback, Unsupported, compile_writer, long_bytes


def both(event: Any) -> tuple[Any, Any]:
    """What codec.encode and fastavro make of `event`: its bytes, or the error's type."""
    outcomes = []
    for write in (codec.encode, codec.encode_with_fastavro):
        try:
            outcomes.append(write(event))
        except SerializationError as exc:
            outcomes.append(type(exc))
    return outcomes[0], outcomes[1]


@settings(max_examples=400, deadline=None)
@given(ANY_EVENT)
def test_every_event_is_written_as_fastavro_writes_it(event: Any) -> None:
    ours, theirs = both(event)
    assert ours == theirs


def test_every_event_type_has_a_compiled_writer() -> None:
    assert set(codec._schemas().writers) == set(codec.EVENT_TYPES)


@given(INTEGERS)
def test_a_long_is_zigzag_then_varint_as_fastavro_writes_it(value: int) -> None:
    schema = fastavro.parse_schema("long")
    buffer = io.BytesIO()
    try:
        fastavro.schemaless_writer(buffer, schema, value)
    except OverflowError:
        with pytest.raises(Fallback):
            long_bytes(value)
        return
    assert long_bytes(value) == buffer.getvalue()


STATUS = JobStatus(
    job_id="job-1",
    kind=JobKind.VERIFY,
    stage=Stage.VERIFY,
    state=StageState.QUEUED,
    occurred_at=datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC),
)


@pytest.mark.parametrize(
    "changes",
    [
        {"occurred_at": datetime(2024, 5, 1, 12, 30, 15, 123000)},  # naive: local time
        {"occurred_at": 1_714_566_615_123},  # already milliseconds
        {"attempt": True},
        {"progress": 7.9},
        {"final": 1},
        {"result": "lone \ud800 surrogate"},
        {"job_id": b"job-1"},
        {"stage": "nowhere"},
        {"priority": ["high"]},
        {"attempt": 2**64},
        {"progress": 2**31},  # an "int" branch of a union takes 32 bits only
    ],
    ids=repr,
)
def test_a_value_the_writer_leaves_to_fastavro_is_fastavro_s_to_write_or_refuse(
    changes: dict[str, Any],
) -> None:
    event = replace(STATUS, **changes)
    ours, theirs = both(event)
    assert ours == theirs
    with pytest.raises((Fallback, KeyError, TypeError, UnicodeEncodeError)):
        codec._schemas().writers[JobStatus](event)


def test_an_enum_symbol_is_written_as_its_member() -> None:
    symbol = replace(STATUS, stage="prove")  # type: ignore[arg-type]
    assert codec.encode(symbol) == codec.encode(replace(STATUS, stage=Stage.PROVE))
    assert both(symbol)[0] == both(symbol)[1]


@pytest.mark.parametrize(
    "kind",
    [
        "float",
        {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]},
        ["null", "string", "int"],
        {"type": "long", "logicalType": "timestamp-micros"},
        {"type": "array", "items": "int"},
        "field name",  # not an Avro name: never written into the compiled source
    ],
    ids=repr,
)
def test_a_schema_with_a_type_it_does_not_write_is_left_to_fastavro(kind: Any) -> None:
    field = (
        {"name": "x) or (y", "type": "int"} if kind == "field name" else {"name": "x", "type": kind}
    )
    schema = fastavro.parse_schema({"type": "record", "name": "R", "fields": [field]})
    with pytest.raises(Unsupported, match=r"^(type|union|logical type|field name) "):
        compile_writer(schema, {}, head=b"")


def test_writers_begin_with_the_frame_of_their_type() -> None:
    frame = codec.MAGIC + codec.schema_fingerprint(JobStatus)
    assert codec._schemas().writers[JobStatus](STATUS).startswith(frame)
