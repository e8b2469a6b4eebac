"""W3C trace context (`traceparent`) carried from the gateway through every stage.

Every record a stage writes carries a `traceparent` naming the stage's own span as parent, so
a job's records form one trace. Ids are made here, with no OpenTelemetry import: spans are
recorded (anchorline/stream/otel.py) only when an exporter is configured.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from anchorline.settings import Settings

TRACEPARENT = "traceparent"
MAX_HEADER = 512  # a traceparent of a later version may grow; none needs more
# version-traceid-parentid-flags, lowercase hex only (W3C Trace Context, section 3.2).
_FORM = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_INVALID_TRACE = "0" * 32
_INVALID_SPAN = "0" * 16


@dataclass(frozen=True)
class TraceContext:
    """Where a span sits: its trace, its own id, and whether the trace is sampled."""

    trace_id: str
    span_id: str
    sampled: bool = True

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def child(self) -> TraceContext:
        """A new span of the same trace."""
        return TraceContext(self.trace_id, _span_id(), self.sampled)


def new_trace() -> TraceContext:
    return TraceContext(os.urandom(16).hex(), _span_id())


def _span_id() -> str:
    return os.urandom(8).hex()


def parse(raw: str | bytes | None) -> TraceContext | None:
    """The context a `traceparent` names, or None if it is absent or malformed in any way (the
    caller then starts a new trace: a bad header from outside is never an error)."""
    if raw is None:
        return None
    value = raw.encode("latin-1", "replace") if isinstance(raw, str) else raw
    if len(value) > MAX_HEADER:
        return None
    match = _FORM.match(value)
    if match is None:
        return None
    version, trace_id, span_id, flags = (part.decode() for part in match.groups())
    if version == "ff" or trace_id == _INVALID_TRACE or span_id == _INVALID_SPAN:
        return None
    # Version 00 is exactly its four fields; a later one may add fields after a dash.
    rest = value[match.end() :]
    if (version == "00" and rest) or (rest and not rest.startswith(b"-")):
        return None
    return TraceContext(trace_id, span_id, sampled=bool(int(flags, 16) & 1))


def of_headers(found: Mapping[str, bytes]) -> TraceContext | None:
    return parse(found.get(TRACEPARENT))


class Span(Protocol):
    """A unit of work: its context goes into the records it writes; `end` when it is done."""

    context: TraceContext

    def note(self, name: str, value: str) -> None:
        """Set an attribute (a job id learnt after the span began)."""
        ...

    def end(self) -> None: ...


class Tracer(Protocol):
    """Starts spans: child spans of `parent`, or the roots of new traces."""

    def start(
        self,
        name: str,
        *,
        parent: TraceContext | None,
        attributes: Mapping[str, str] | None = None,
        links: Sequence[TraceContext] = (),
        kind: str = "internal",
    ) -> Span: ...

    def close(self) -> None: ...


@dataclass
class IdSpan:
    """A span that is only its ids: nothing is recorded."""

    context: TraceContext

    def note(self, name: str, value: str) -> None:
        return None

    def end(self) -> None:
        return None


class IdsOnly:
    """The tracer with no exporter: ids for the headers, nothing recorded, nothing imported."""

    def start(
        self,
        name: str,
        *,
        parent: TraceContext | None,
        attributes: Mapping[str, str] | None = None,
        links: Sequence[TraceContext] = (),
        kind: str = "internal",
    ) -> Span:
        return IdSpan(parent.child() if parent is not None else new_trace())

    def close(self) -> None:
        return None


IDS_ONLY = IdsOnly()


def tracer_for(settings: Settings, *, service: str) -> Tracer:
    """Spans recorded and exported if the settings name an exporter; else ids only, and the
    OpenTelemetry SDK is never imported."""
    if not settings.tracing:
        return IDS_ONLY
    from anchorline.stream import otel

    return otel.tracer(settings, service=service)


class BatchSpans:
    """A span for each record of a batch a stage handles, each the child of its record's
    `traceparent` (a new trace's root where there is none, or a malformed one: a bad header is
    never the record's failure), and the `traceparent` each of the stage's outputs carries."""

    def __init__(self, tracer: Tracer, *, name: str) -> None:
        self.tracer = tracer
        self.name = name
        self.spans: dict[Hashable, Span] = {}
        self.by_key: dict[bytes, TraceContext] = {}
        self.first: TraceContext | None = None

    def start(
        self, record: Hashable, *, headers: Mapping[str, bytes], key: bytes | None, topic: str
    ) -> None:
        span = self.tracer.start(
            self.name,
            parent=of_headers(headers),
            attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
            kind="consumer",
        )
        self.spans[record] = span
        self.first = self.first or span.context
        if key:
            self.by_key.setdefault(key, span.context)

    def about(self, record: Hashable, job_ids: Iterable[str]) -> None:
        """The record's jobs: their outputs carry its span's context."""
        span = self.spans.get(record)
        if span is None:
            return
        for job_id in job_ids:
            self.by_key[job_id.encode()] = span.context
            span.note("anchorline.job_id", job_id)

    def traceparent(self, key: bytes | None) -> bytes | None:
        """For an output keyed `key` (a job id); one about none of the batch's jobs (an anchor
        batch) continues the trace of the batch's first record."""
        context = self.by_key.get(key or b"", self.first)
        return context.traceparent.encode() if context is not None else None

    def stamp(
        self, key: bytes | None, found: list[tuple[str, str | bytes | None]]
    ) -> list[tuple[str, str | bytes | None]]:
        """`found` headers with this batch's traceparent for `key`; a record that carries one
        already (going round again as it came) keeps its own."""
        value = self.traceparent(key)
        if value is None or any(name == TRACEPARENT for name, _ in found):
            return found
        return [*found, (TRACEPARENT, value)]

    def end(self) -> None:
        for span in self.spans.values():
            span.end()
