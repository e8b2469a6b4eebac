"""Kafka header names and codecs: Spring Kafka's retry-topic and dead-letter conventions.

Values are UTF-8 text (Spring writes some as binary integers; text keeps them readable
with any tool). `anchorline-generations` maps job ids to their replay generation, JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

Header = tuple[str, str | bytes | None]

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

ORIGIN = (ORIGINAL_TOPIC, ORIGINAL_PARTITION, ORIGINAL_OFFSET, DLT_ORIGINAL_TIMESTAMP)


def as_map(headers: Any) -> dict[str, bytes]:
    """The last value of each header (a list of pairs, as confluent-kafka gives), as bytes."""
    found: dict[str, bytes] = {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers or []
    for name, value in pairs:
        found[name] = value.encode() if isinstance(value, str) else (value or b"")
    return found


def number(headers: Mapping[str, bytes], name: str, default: int) -> int:
    try:
        return int(headers[name].decode())
    except (KeyError, ValueError, UnicodeDecodeError):
        return default


def text(headers: Mapping[str, bytes], name: str, default: str = "") -> str:
    return headers[name].decode("utf-8", "replace") if name in headers else default


def generations(headers: Mapping[str, bytes]) -> dict[str, int]:
    try:
        raw = json.loads(headers.get(GENERATIONS, b"{}"))
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(job): int(gen) for job, gen in raw.items() if isinstance(gen, int)}


def encode_generations(mapping: Mapping[str, int]) -> list[Header]:
    nonzero = {job: gen for job, gen in sorted(mapping.items()) if gen}
    return [(GENERATIONS, json.dumps(nonzero, separators=(",", ":")).encode())] if nonzero else []


def failure(exc: BaseException) -> list[Header]:
    return [
        (EXCEPTION_FQCN, f"{type(exc).__module__}.{type(exc).__qualname__}".encode()),
        (EXCEPTION_MESSAGE, str(exc).encode()),
    ]
