"""Avro binary decoding of an event written with today's schema, compiled once a schema into one
Python function that makes the event straight from the bytes.

fastavro's reader walks the schema for every record and gives a dict the codec then turns into
the event: 26 µs a JobStatus on a slow machine, a quarter of the projector's CPU. The function
compiled here reads only what a well-formed record of the schema holds: each varint at most 64
bits (an "int" 32), a boolean 0 or 1, a union or enum index in range, strict UTF-8 within the
message, map and array blocks counted without byte sizes, and nothing after the record. At
anything else it raises `Fallback` (or the error of reading past the end), so that the caller
reads that message with fastavro, whose result or refusal it is. Tests check that whatever this
reads, fastavro reads the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

# What an Avro name is; a field named otherwise is not written into the compiled source.
AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

Reader = Callable[[bytes], Any]


class Fallback(Exception):
    """A message this reader leaves to fastavro."""


class Unsupported(Exception):
    """A schema construct this compiler leaves to fastavro."""


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """The zigzag varint at `pos` (at most 64 bits) and the position after it."""
    byte = data[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    zigzag, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = data[pos]
        zigzag |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 63:
            raise Fallback
    if zigzag >> 64:
        raise Fallback
    return (zigzag >> 1) ^ -(zigzag & 1), pos + 1


def compile_reader(
    schema: Any,
    named: Mapping[str, Any],
    *,
    make: type[Any],
    head: int,
    members: Mapping[str, Mapping[str, Any]],
) -> Reader:
    """A function reading the Avro body of record `schema` (parsed by fastavro; `named`
    resolves its type names) from byte `head` of a message, to the end, into `make(**fields)`;
    an enum field named in `members` becomes the member of its symbol. Unsupported for a schema
    with a type it does not read."""
    compiler = _Compiler(named, members)
    lines = ["def read(data):", f"    pos = {head}", "    size_of_data = len(data)"]
    names = []
    accepted = {spec.name for spec in fields(make)}
    if accepted - {field["name"] for field in schema["fields"]}:
        raise Unsupported("an event field the schema lacks (its default is for __init__ to set)")
    for index, field in enumerate(schema["fields"]):
        if not AVRO_NAME.fullmatch(field["name"]):
            raise Unsupported(f"field name {field['name']!r}")
        name = f"v{index}"
        if field["name"] in accepted:  # as the codec makes an event: the fields it has
            names.append(f"{field['name']}={name}")
        lines += compiler.value(field["type"], name, field["name"], indent=4)
    # Every field given, and no __post_init__ to run: the frozen dataclass's __init__ would set
    # each through object.__setattr__, a third of the time of reading a JobStatus.
    lines += [
        "    if pos != size_of_data: raise Fallback",
        "    event = NEW(MAKE)",
        f"    event.__dict__.update({', '.join(names)})",
        "    return event",
    ]
    if hasattr(make, "__post_init__") or hasattr(make, "__slots__"):
        raise Unsupported("an event type made other than by setting its fields")
    scope: dict[str, Any] = {
        "NEW": object.__new__,
        "MAKE": make,
        "Fallback": Fallback,
        "read_long": read_long,
        "EPOCH": EPOCH,
        "timedelta": timedelta,
        **compiler.constants,
    }
    exec(compile("\n".join(lines), f"<avro reader of {schema['name']}>", "exec"), scope)
    reader: Reader = scope["read"]
    return reader


class _Compiler:
    def __init__(self, named: Mapping[str, Any], members: Mapping[str, Mapping[str, Any]]) -> None:
        self.named = named
        self.members = members
        self.constants: dict[str, Any] = {}

    def value(self, kind: Any, name: str, field: str, *, indent: int) -> list[str]:
        """Lines that read a value of Avro type `kind` into variable `name`."""
        pad = " " * indent
        if isinstance(kind, list):
            return self._union(kind, name, field, indent=indent)
        if isinstance(kind, dict):
            return self._complex(kind, name, field, indent=indent)
        if kind == "string":
            return _text(name, pad)
        if kind == "long":
            return _long(name, pad)
        if kind == "int":
            return [
                *_long(name, pad),
                f"{pad}if not {INT_MIN} <= {name} <= {INT_MAX}: raise Fallback",
            ]
        if kind == "boolean":
            return [
                f"{pad}{name} = data[pos]",
                f"{pad}pos += 1",
                f"{pad}if {name} > 1: raise Fallback",
                f"{pad}{name} = {name} == 1",
            ]
        if isinstance(kind, str) and kind in self.named:
            return self.value(self.named[kind], name, field, indent=indent)
        raise Unsupported(f"type {kind!r}")

    def _union(self, branches: list[Any], name: str, field: str, *, indent: int) -> list[str]:
        if len(branches) != 2 or "null" not in branches:
            raise Unsupported(f"union {branches!r}")
        null = branches.index("null")
        pad = " " * indent
        return [
            *_long("index", pad),
            f"{pad}if index == {null}:",
            f"{pad}    {name} = None",
            f"{pad}elif index == {1 - null}:",
            *self.value(branches[1 - null], name, field, indent=indent + 4),
            f"{pad}else: raise Fallback",
        ]

    def _complex(self, kind: dict[str, Any], name: str, field: str, *, indent: int) -> list[str]:
        pad = " " * indent
        if kind.get("logicalType") == "timestamp-millis" and kind["type"] == "long":
            # fastavro's conversion, to an aware datetime in UTC.
            return [
                *_long(name, pad),
                f"{pad}{name} = EPOCH + timedelta(microseconds={name} * 1000)",
            ]
        if "logicalType" in kind:
            raise Unsupported(f"logical type {kind['logicalType']!r}")
        if kind["type"] == "enum":
            symbols = kind["symbols"]
            found = self.members.get(field)
            label = f"SYMBOLS_{name}"
            self.constants[label] = tuple(found[s] for s in symbols) if found else tuple(symbols)
            return [
                *_long(name, pad),
                f"{pad}if not 0 <= {name} < {len(symbols)}: raise Fallback",
                f"{pad}{name} = {label}[{name}]",
            ]
        if kind["type"] == "map" and kind["values"] == "string":
            return self._blocks(
                name,
                "{}",
                [*_text("key", ""), *_text(f"{name}[key]", "")],
                indent=indent,
            )
        if kind["type"] == "array" and kind["items"] == "string":
            return self._blocks(
                name,
                "[]",
                [*_text("item", ""), f"{name}.append(item)"],
                indent=indent,
            )
        if kind["type"] in ("string", "int", "long", "boolean"):
            return self.value(kind["type"], name, field, indent=indent)
        raise Unsupported(f"type {kind['type']!r}")

    def _blocks(self, name: str, empty: str, entry: list[str], *, indent: int) -> list[str]:
        """Blocks of entries until the empty block; a block given with its size in bytes (a
        negative count) is fastavro's to read."""
        pad = " " * indent
        return [
            f"{pad}{name} = {empty}",
            f"{pad}while True:",
            f"{pad}    count, pos = read_long(data, pos)",
            f"{pad}    if count == 0: break",
            f"{pad}    if count < 0: raise Fallback",
            f"{pad}    for _ in range(count):",
            *(f"{pad}        {line}" for line in entry),
        ]


def _long(name: str, pad: str) -> list[str]:
    """Lines that read a varint into `name`: read_long, with its one-byte case inline (a
    function call a field was half the time of reading a request)."""
    return [
        f"{pad}{name} = data[pos]",
        f"{pad}if {name} < 0x80:",
        f"{pad}    {name} = ({name} >> 1) ^ -({name} & 1)",
        f"{pad}    pos += 1",
        f"{pad}else:",
        f"{pad}    {name}, pos = read_long(data, pos)",
    ]


def _text(name: str, pad: str) -> list[str]:
    """Lines that read a length-prefixed UTF-8 string into `name`: its length (at most the
    rest of the message) and the strict UTF-8 of that many bytes."""
    return [
        *_long("size", pad),
        f"{pad}end = pos + size",
        f"{pad}if size < 0 or end > size_of_data: raise Fallback",
        f"{pad}{name} = data[pos:end].decode()",
        f"{pad}pos = end",
    ]
