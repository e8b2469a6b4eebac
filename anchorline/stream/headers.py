"""Kafka header names and codecs: Spring Kafka's retry-topic and dead-letter conventions.

Values are UTF-8 text (Spring writes some as binary integers; text keeps them readable
with any tool). `anchorline-generations` maps job ids to their replay generation, JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from anchorline.errors import BadInput, Poison
from anchorline.events import MAX_ATTEMPTS, MAX_GENERATION
from anchorline.untrusted import parse_json

Header = tuple[str, str | bytes | None]
T = TypeVar("T")

ATTEMPTS = "retry_topic-attempts"
DUE = "retry_topic-backoff-timestamp"
ORIGINAL_TIMESTAMP = "retry_topic-original-timestamp"
EXCEPTION_FQCN = "kafka_dlt-exception-fqcn"
EXCEPTION_MESSAGE = "kafka_dlt-exception-message"
ORIGINAL_TOPIC = "kafka_dlt-original-topic"
ORIGINAL_PARTITION = "kafka_dlt-original-partition"
ORIGINAL_OFFSET = "kafka_dlt-original-offset"
DLT_ORIGINAL_TIMESTAMP = "kafka_dlt-original-timestamp"
GENERATIONS = "anchorline-generations"
REPLAY_OF = "anchorline-replay-of"
VALUE_DROPPED = "anchorline-value-dropped"  # bytes of a value too large to copy to a retry or DLQ

ORIGIN = (ORIGINAL_TOPIC, ORIGINAL_PARTITION, ORIGINAL_OFFSET, DLT_ORIGINAL_TIMESTAMP)

MAX_NUMBER = 2**63 - 1  # Kafka's own offsets and timestamps are signed 64-bit
MAX_GENERATIONS_BYTES = 256 * 1024  # an anchor batch of a few thousand jobs
MAX_TEXT = 4096  # an error message carried in a header or a status
_INTEGER = re.compile(rb"-?[0-9]{1,19}")


class BadHeader(Poison):
    """A header of ours that no stage could have written: the record is dead-lettered."""


def as_map(headers: Any) -> dict[str, bytes]:
    """The last value of each header (a list of pairs, as confluent-kafka gives), as bytes."""
    found: dict[str, bytes] = {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers or []
    for name, value in pairs:
        found[name] = value.encode() if isinstance(value, str) else (value or b"")
    return found


def number(
    headers: Mapping[str, bytes], name: str, default: int, *, low: int = 0, high: int = MAX_NUMBER
) -> int:
    """The header as an integer from `low` to `high`, `default` when absent, else BadHeader."""
    raw = headers.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise BadHeader(f"header {name} is not a decimal integer of at most 19 digits")
    value = int(raw)
    if not low <= value <= high:
        raise BadHeader(f"header {name} must be from {low} to {high}, not {value}")
    return value


def attempt(headers: Mapping[str, bytes]) -> int:
    """The attempt a message is on; BadHeader when its count is not one a stage wrote."""
    return number(headers, ATTEMPTS, 1, low=1, high=MAX_ATTEMPTS)


def check(headers: Mapping[str, bytes]) -> None:
    """BadHeader (Poison) with the reason if a header the runner reads is out of bounds."""
    attempt(headers)
    generations(headers)


def text(headers: Mapping[str, bytes], name: str, default: str = "") -> str:
    return headers[name].decode("utf-8", "replace") if name in headers else default


def generations(headers: Mapping[str, bytes]) -> dict[str, int]:
    """Job id → replay generation; BadHeader unless a JSON object of ids to bounded integers."""
    if GENERATIONS not in headers:  # the first run of every job: nothing to parse
        return {}
    try:
        raw = parse_json(
            headers[GENERATIONS],
            what=f"header {GENERATIONS}",
            max_bytes=MAX_GENERATIONS_BYTES,
            max_depth=1,
        )
    except BadInput as exc:
        raise BadHeader(str(exc)) from exc
    if not isinstance(raw, dict):
        raise BadHeader(f"header {GENERATIONS} must be a JSON object")
    for job, generation in raw.items():
        if type(generation) is not int or not 0 <= generation <= MAX_GENERATION:
            raise BadHeader(
                f"header {GENERATIONS}: the generation of {job[:64]!r} must be an integer "
                f"from 0 to {MAX_GENERATION}"
            )
    return raw


def known_generations(headers: Mapping[str, bytes]) -> dict[str, int]:
    """The generations header where a bad one must not stop the work: none known."""
    return lenient(generations, headers, {})


def lenient(
    read: Callable[[Mapping[str, bytes]], T], headers: Mapping[str, bytes], default: T
) -> T:
    """`read(headers)`, or `default` where a bad header must not stop the work (a dead letter
    being written or shown)."""
    try:
        return read(headers)
    except BadHeader:
        return default


def encode_generations(mapping: Mapping[str, int]) -> list[Header]:
    nonzero = {job: gen for job, gen in sorted(mapping.items()) if gen}
    return [(GENERATIONS, json.dumps(nonzero, separators=(",", ":")).encode())] if nonzero else []


def reason(exc: BaseException) -> str:
    """The exception's message, cut to MAX_TEXT characters: it travels in headers and statuses,
    and one quoting a huge value must not make its record too large to produce."""
    text = str(exc)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def failure(exc: BaseException) -> list[Header]:
    return [
        (EXCEPTION_FQCN, f"{type(exc).__module__}.{type(exc).__qualname__}".encode()),
        (EXCEPTION_MESSAGE, reason(exc).encode("utf-8", "replace")),
    ]
