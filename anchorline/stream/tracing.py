"""W3C trace context (`traceparent`) carried from the gateway through every stage.

Every record a stage writes carries a `traceparent` naming the stage's own span as parent, so
a job's records form one trace. Ids are made here, with no OpenTelemetry import: spans are
recorded (anchorline/stream/otel.py) only when an exporter is configured.
"""

from __future__ import annotations

import random
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from anchorline.settings import Settings

TRACEPARENT = "traceparent"
MAX_HEADER = 512  # a traceparent of a later version may grow; none needs more
# version-traceid-parentid-flags, lowercase hex only (W3C Trace Context, section 3.2).
_FORM = re.compile(rb"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_LENGTH = 55  # of those four fields
_INVALID_TRACE = "0" * 32
_INVALID_SPAN = "0" * 16


class TraceContext(NamedTuple):
    """Where a span sits: its trace, its own id, and whether the trace is sampled (a tuple: a
    few of these are made for every record a stage handles)."""

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
    return TraceContext(f"{random.getrandbits(128) or 1:032x}", _span_id())


def _span_id() -> str:
    # random, not os.urandom, as OpenTelemetry's own ids: unique, not secret, and cheap.
    return f"{random.getrandbits(64) or 1:016x}"


def parse(raw: str | bytes | None) -> TraceContext | None:
    """The context a `traceparent` names, or None if it is absent or malformed in any way (the
    caller then starts a new trace: a bad header from outside is never an error)."""
    if raw is None:
        return None
    value = raw.encode("latin-1", "replace") if isinstance(raw, str) else raw
    if len(value) > MAX_HEADER or _FORM.match(value) is None:
        return None
    text = value[:_LENGTH].decode("ascii")
    version, trace_id, span_id = text[:2], text[3:35], text[36:52]
    if version == "ff" or trace_id == _INVALID_TRACE or span_id == _INVALID_SPAN:
        return None
    # Version 00 is exactly its four fields; a later one may add fields after a dash.
    rest = value[_LENGTH:]
    if (version == "00" and rest) or (rest and not rest.startswith(b"-")):
        return None
    return TraceContext(trace_id, span_id, sampled=bool(int(text[53:55], 16) & 1))


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


class IdSpan:
    """A span that is only its ids: nothing is recorded."""

    __slots__ = ("context",)

    def __init__(self, context: TraceContext) -> None:
        self.context = context

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
        self._encoded: dict[TraceContext, bytes] = {}

    def start(
        self, record: Hashable, *, headers: Mapping[str, bytes], key: bytes | None, topic: str
    ) -> None:
        recorded = self.tracer is not IDS_ONLY  # no attributes to make for nothing
        span = self.tracer.start(
            self.name,
            parent=of_headers(headers),
            attributes={"messaging.system": "kafka", "messaging.destination.name": topic}
            if recorded
            else None,
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
        if context is None:
            return None
        found = self._encoded.get(context)
        if found is None:
            found = self._encoded[context] = context.traceparent.encode()
        return found

    def stamp(
        self, key: bytes | None, found: list[tuple[str, str | bytes | None]]
    ) -> list[tuple[str, str | bytes | None]]:
        """`found` headers, given this batch's traceparent for `key` (in place: each record's
        headers are a list of its own); a record that carries one already (going round again
        as it came) keeps its own."""
        value = self.traceparent(key)
        if value is not None and all(name != TRACEPARENT for name, _ in found):
            found.append((TRACEPARENT, value))
        return found

    def end(self) -> None:
        for span in self.spans.values():
            span.end()
