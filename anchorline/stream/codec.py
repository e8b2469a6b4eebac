"""The one Avro codec: single-object encoding of the schemas in schemas/.

Every message value is framed as the Avro specification's single-object encoding:
the two marker bytes C3 01, the 8-byte little-endian CRC-64-AVRO fingerprint of the
writer schema's parsing canonical form, then the Avro binary body. A reader knows
from the fingerprint which schema wrote the message without any registry. Schemas as
they were before an additive change stay in schemas/past/ (`<Type>-<fingerprint>.avsc`,
written out standalone): a record one of them wrote is read into today's type, its new
fields at their defaults.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import fields
from enum import StrEnum
from functools import cache
from typing import Any, TypeVar, cast

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from anchorline.errors import SerializationError
from anchorline.events import (
    AnchorRequested,
    Event,
    JobKind,
    JobRequested,
    JobStatus,
    NotifyRequested,
    Priority,
    ProveRequested,
    Stage,
    StageState,
)
from anchorline.paths import SCHEMAS_DIR
from anchorline.stream import avro_reader, avro_writer

PAST_DIR = SCHEMAS_DIR / "past"

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8

# Order matters: later schemas refer to named types defined by earlier ones.
EVENT_TYPES: tuple[type[Any], ...] = (
    JobRequested,
    ProveRequested,
    AnchorRequested,
    JobStatus,
    NotifyRequested,
)
_ENUMS: dict[str, type[StrEnum]] = {
    "kind": JobKind,
    "stage": Stage,
    "state": StageState,
    "priority": Priority,
}

# Each enum's members by value: what _to_event looks up for every field of an enum type.
_ENUM_MEMBERS: dict[str, dict[str, StrEnum]] = {
    name: {member.value: member for member in enum_type} for name, enum_type in _ENUMS.items()
}

E = TypeVar("E", bound=Event)


class _Schemas:
    def __init__(self) -> None:
        named: dict[str, Any] = {}
        self.by_type: dict[type[Any], Any] = {}
        self.by_fingerprint: dict[bytes, tuple[type[Any], Any]] = {}
        self.past: dict[bytes, Any] = {}  # fingerprint of an earlier schema → it, to resolve
        self.fingerprints: dict[type[Any], bytes] = {}
        self.standalone: dict[type[Any], Any] = {}
        self.writers: dict[type[Any], avro_writer.Writer] = {}
        self.readers: dict[bytes, avro_reader.Reader] = {}  # by fingerprint: today's schemas
        definitions: dict[str, Any] = {}
        for event_type in EVENT_TYPES:
            raw = json.loads((SCHEMAS_DIR / f"{event_type.__name__}.avsc").read_text())
            self.standalone[event_type] = _expanded(raw, definitions)
            # Fingerprint the schema as it stands on its own, with the named types it borrows
            # from earlier files written out in full: that is the schema other Avro libraries
            # see, and a bare name in the canonical form would give a fingerprint only we use.
            standalone = fastavro.parse_schema(raw, named_schemas=dict(named), expand=True)
            parsed = fastavro.parse_schema(raw, named_schemas=named)
            digest = bytes.fromhex(
                fingerprint(to_parsing_canonical_form(standalone), "CRC-64-AVRO")
            )
            self.by_type[event_type] = parsed
            self.by_fingerprint[digest] = (event_type, parsed)
            self.fingerprints[event_type] = digest
            self._add_past(event_type, standalone)
            with contextlib.suppress(avro_writer.Unsupported):  # else fastavro writes it
                self.writers[event_type] = avro_writer.compile_writer(
                    parsed, named, head=MAGIC + digest
                )
            with contextlib.suppress(avro_reader.Unsupported):  # else fastavro reads it
                self.readers[digest] = avro_reader.compile_reader(
                    parsed, named, make=event_type, head=HEADER_SIZE, members=_ENUM_MEMBERS
                )

    def _add_past(self, event_type: type[Any], current: Any) -> None:
        for path in sorted(PAST_DIR.glob(f"{event_type.__name__}-*.avsc")):
            writer = fastavro.parse_schema(json.loads(path.read_text()), named_schemas={})
            digest = bytes.fromhex(fingerprint(to_parsing_canonical_form(writer), "CRC-64-AVRO"))
            if digest.hex() != path.stem.rsplit("-", 1)[1]:
                raise ValueError(f"{path.name} does not have the fingerprint its name says")
            self.by_fingerprint[digest] = (event_type, current)
            self.past[digest] = writer


@cache
def _schemas() -> _Schemas:
    return _Schemas()


def schema_fingerprint(event_type: type[Any]) -> bytes:
    """The 8 fingerprint bytes that frame messages of this type."""
    return _schemas().fingerprints[event_type]


def encode(event: Event) -> bytes:
    writer = _schemas().writers.get(type(event))
    if writer is not None:
        # Any value it does not expect is fastavro's to write or refuse (avro_writer.py).
        with contextlib.suppress(Exception):
            return writer(event)
    return encode_with_fastavro(event)


def encode_with_fastavro(event: Event) -> bytes:
    """The frame fastavro writes for `event` (what the compiled writer must match)."""
    schemas = _schemas()
    event_type = type(event)
    buffer = io.BytesIO()
    buffer.write(MAGIC + schemas.fingerprints[event_type])
    try:
        fastavro.schemaless_writer(buffer, schemas.by_type[event_type], _record(event))
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise SerializationError(f"cannot encode {event_type.__name__}: {exc}") from exc
    return buffer.getvalue()


def _record(event: Event) -> dict[str, Any]:
    # Not dataclasses.asdict: events hold no dataclasses, and its deep copy of every value was
    # most of the cost of encoding one.
    event_type: Any = type(event)
    return {name: getattr(event, name) for name in _field_names(event_type)}


@cache
def _field_names(event_type: Any) -> tuple[str, ...]:
    return tuple(spec.name for spec in fields(event_type))


def decode_any(data: bytes | None) -> Event:
    """Decode a framed message of any known type."""
    event = _read_fast(data)
    if event is not None:
        return event
    return decode_with_fastavro(data)


def decode_with_fastavro(data: bytes | None) -> Event:
    """What decode_any does for what the compiled readers leave: fastavro reads the record,
    with the writer's schema resolved to ours, and the event is made from it."""
    event_type, record = _read(data)
    return _to_event(event_type, record)


def _read_fast(data: bytes | None) -> Any:
    """The event of a message today's schema wrote, read by its compiled reader; None for
    anything else, or anything it leaves to fastavro (avro_reader.py)."""
    if not data or data[:2] != MAGIC:
        return None
    reader = _schemas().readers.get(data[2:HEADER_SIZE])
    if reader is None:
        return None
    try:
        return reader(data)
    except Exception:  # the message is fastavro's to read or refuse
        return None


def field_of(data: bytes | None, expect: type[Any], name: str) -> Any:
    """One field of a framed message that must be of type `expect`, read and checked as
    `decode` reads and checks the whole message (SerializationError where it would raise),
    without making the event: the projector wants one field of every request it keeps."""
    event = _read_fast(data)
    if type(event) is expect and name in _field_names(cast(Any, expect)):
        return getattr(event, name)
    event_type, record = _read(data)
    if event_type is not expect:
        raise SerializationError(f"expected {expect.__name__}, got {event_type.__name__}")
    if not isinstance(record, dict):
        raise SerializationError(f"{event_type.__name__} body is not a record")
    return record.get(name)


def _read(data: bytes | None) -> tuple[type[Any], Any]:
    """The event type of a framed message and its Avro record, read with our schema."""
    if data is None or len(data) < HEADER_SIZE:
        raise SerializationError("message too short to carry the single-object header")
    if data[:2] != MAGIC:
        raise SerializationError(f"not single-object encoded Avro (marker {data[:2].hex()})")
    known = _schemas().by_fingerprint.get(data[2:HEADER_SIZE])
    if known is None:
        raise SerializationError(f"unknown schema fingerprint {data[2:HEADER_SIZE].hex()}")
    event_type, parsed = known
    writer = _schemas().past.get(data[2:HEADER_SIZE], parsed)
    body = io.BytesIO(data[HEADER_SIZE:])
    try:
        record = fastavro.schemaless_reader(body, writer, parsed if writer is not parsed else None)
    except (ValueError, TypeError, EOFError, IndexError, KeyError, OverflowError) as exc:
        raise SerializationError(f"corrupt {event_type.__name__} body: {exc}") from exc
    trailing = len(data) - HEADER_SIZE - body.tell()
    if trailing:  # one message is one record: bytes after it were smuggled or corrupted
        raise SerializationError(f"{trailing} bytes after the {event_type.__name__} body")
    return event_type, record


def decode(data: bytes | None, expect: type[E]) -> E:
    """Decode a framed message that must be of type `expect`."""
    event = decode_any(data)
    if not isinstance(event, expect):
        raise SerializationError(f"expected {expect.__name__}, got {type(event).__name__}")
    return event


def _to_event(event_type: type[E], record: Any) -> E:
    if not isinstance(record, dict):
        raise SerializationError(f"{event_type.__name__} body is not a record")
    names = _field_names(cast(Any, event_type))
    values: dict[str, Any] = {name: record[name] for name in names if name in record}
    for name, members in _ENUM_MEMBERS.items():
        symbol = values.get(name)
        if symbol is not None:  # a union with null (JobStatus.priority) may be null
            # The member by its value, as enum_type(symbol) finds it at a tenth of the cost;
            # fastavro has checked the symbol against the schema, which lists the same ones.
            member = members.get(symbol)
            values[name] = member if member is not None else _ENUMS[name](symbol)
    return event_type(**values)


def record_of(event: Event) -> dict[str, Any]:
    """The Avro record of an event (what a serializer writes)."""
    return _record(event)


def to_event(event_type: type[E], record: Any) -> E:
    """The event of a record read with this type's schema."""
    return _to_event(event_type, record)


def type_named(name: str) -> type[Any] | None:
    """The event type of a record name (`JobStatus`), if it is one."""
    return next((kind for kind in EVENT_TYPES if kind.__name__ == name), None)


def reader_schema(event_type: type[Any]) -> Any:
    """Our parsed schema of an event type, to resolve another writer's schema against."""
    return _schemas().by_type[event_type]


def standalone_schema(event_type: type[Any]) -> Any:
    """The schema of an event type as JSON, with the named types it borrows from earlier files
    written out where first used: what a registry stores for it."""
    return _schemas().standalone[event_type]


def _expanded(node: Any, definitions: dict[str, Any], namespace: str = "") -> Any:
    """`node` with names defined in earlier files replaced by their definition at first use;
    records its own named types in `definitions` for the files after it."""
    seen: set[str] = set()

    def walk(item: Any, space: str) -> Any:
        if isinstance(item, str):
            full = item if "." in item else f"{space}.{item}"
            if full in definitions and full not in seen:
                seen.add(full)
                return walk(definitions[full], space)
            return item
        if isinstance(item, list):
            return [walk(part, space) for part in item]
        if not isinstance(item, dict):
            return item
        out = dict(item)
        if item.get("type") in ("record", "enum", "fixed") and "name" in item:
            space = item.get("namespace", space)
            full = item["name"] if "." in item["name"] else f"{space}.{item['name']}"
            seen.add(full)
            definitions.setdefault(full, item)
        for key in ("type", "items", "values"):
            if key in item and not (key == "type" and item[key] in ("record", "enum", "fixed")):
                out[key] = walk(item[key], space)
        if "fields" in item:
            out["fields"] = [walk(field, space) for field in item["fields"]]
        return out

    return walk(node, namespace)
