"""OpenTelemetry spans, for a service whose settings name an exporter (imported only then)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    set_span_in_context,
)

from anchorline.settings import Settings
from anchorline.stream.tracing import TraceContext

KINDS = {
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}


class FileSpanExporter(SpanExporter):
    """Spans as JSON lines appended to a file, each export in one write: processes that share
    the file never interleave their lines."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        os.write(self.fd, lines.encode())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        os.close(self.fd)


class OtelSpan:
    def __init__(self, span: SdkSpan | NonRecordingSpan) -> None:
        self.span = span
        found = span.get_span_context()
        self.context = TraceContext(
            format(found.trace_id, "032x"), format(found.span_id, "016x"), found.trace_flags.sampled
        )

    def note(self, name: str, value: str) -> None:
        self.span.set_attribute(name, value)

    def end(self) -> None:
        self.span.end()


class OtelTracer:
    """Records spans through the OpenTelemetry SDK and exports them in batches."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("anchorline")

    def start(
        self,
        name: str,
        *,
        parent: TraceContext | None,
        attributes: Mapping[str, str] | None = None,
        links: Sequence[TraceContext] = (),
        kind: str = "internal",
    ) -> OtelSpan:
        context = set_span_in_context(NonRecordingSpan(_remote(parent))) if parent else None
        span = self.tracer.start_span(
            name,
            context=context,
            kind=KINDS[kind],
            attributes=dict(attributes or {}),
            links=[Link(_remote(link)) for link in links],
        )
        return OtelSpan(span)  # type: ignore[arg-type]

    def close(self) -> None:
        self.provider.shutdown()  # exports what is still queued


def _remote(context: TraceContext) -> SpanContext:
    return SpanContext(
        int(context.trace_id, 16),
        int(context.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if context.sampled else TraceFlags.DEFAULT),
    )


def exporters(settings: Settings) -> list[SpanExporter]:
    found: list[SpanExporter] = []
    if "otlp" in settings.span_exporters:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        found.append(OTLPSpanExporter(endpoint=settings.otlp_traces_endpoint or None))
    if "console" in settings.span_exporters:
        found.append(ConsoleSpanExporter())
    if settings.trace_file is not None:
        found.append(FileSpanExporter(settings.trace_file))
    return found


def tracer(settings: Settings, *, service: str) -> OtelTracer:
    provider = TracerProvider(resource=Resource.create({"service.name": f"anchorline-{service}"}))
    for exporter in exporters(settings):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return OtelTracer(provider)
