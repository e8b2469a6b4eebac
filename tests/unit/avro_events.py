"""Events of every type with any values their fields may hold: what the compiled Avro writer and
reader are checked against fastavro with."""

from __future__ import annotations

import types
import typing
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from hypothesis import strategies as st

from anchorline.stream import codec

ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
# Past 64 bits neither writes an integer; between 32 and 64 bits both write an "int" field.
INTEGERS = st.integers(min_value=-(2**70), max_value=2**70) | st.integers(-(2**33), 2**33)
DATETIMES = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.sampled_from(ZONES)
)


def strategy_of(kind: Any, integers: st.SearchStrategy[int] = INTEGERS) -> st.SearchStrategy[Any]:
    """Values of an event field's annotated type."""
    if isinstance(kind, types.UnionType):
        return st.one_of(*(strategy_of(arg, integers) for arg in typing.get_args(kind)))
    origin = typing.get_origin(kind)
    if origin is dict:
        return st.dictionaries(TEXT, TEXT, max_size=4)
    if origin is list:
        return st.lists(TEXT, max_size=4)
    if kind is type(None):
        return st.none()
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return st.sampled_from(list(kind))
    return {str: TEXT, int: integers, bool: st.booleans(), datetime: DATETIMES}[kind]


def events_of(
    event_type: type[Any], integers: st.SearchStrategy[int] = INTEGERS
) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(event_type)
    return st.builds(
        event_type,
        **{spec.name: strategy_of(hints[spec.name], integers) for spec in fields(event_type)},
    )


ANY_EVENT = st.one_of(*(events_of(event_type) for event_type in codec.EVENT_TYPES))
# What stages write: every integer within 32 bits, so that each is read back whatever its field.
PLAIN_EVENT = st.one_of(
    *(events_of(kind, st.integers(-(2**31), 2**31 - 1)) for kind in codec.EVENT_TYPES)
)
