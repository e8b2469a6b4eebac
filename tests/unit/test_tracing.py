"""W3C traceparent parsing (hostile input), the ids-only tracer and the OpenTelemetry one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anchorline.errors import ConfigurationError
from anchorline.settings import Settings
from anchorline.stream.tracing import (
    IDS_ONLY,
    BatchSpans,
    TraceContext,
    new_trace,
    parse,
    tracer_for,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


def test_a_valid_traceparent_names_its_trace_span_and_sampling() -> None:
    assert parse(VALID) == TraceContext(TRACE, SPAN, sampled=True)
    assert parse(VALID.encode()) == TraceContext(TRACE, SPAN, sampled=True)
    assert parse(f"00-{TRACE}-{SPAN}-00") == TraceContext(TRACE, SPAN, sampled=False)
    assert parse(VALID).traceparent == VALID  # type: ignore[union-attr]


def test_a_later_version_is_read_for_its_first_four_fields() -> None:
    assert parse(f"cc-{TRACE}-{SPAN}-01-what-comes-later") == TraceContext(TRACE, SPAN)
    assert parse(f"cc-{TRACE}-{SPAN}-01") == TraceContext(TRACE, SPAN)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "garbage",
        VALID.upper(),  # lowercase hex only
        f"00-{'0' * 32}-{SPAN}-01",  # the invalid trace id
        f"00-{TRACE}-{'0' * 16}-01",  # the invalid span id
        f"ff-{TRACE}-{SPAN}-01",  # the forbidden version
        VALID + "-extra",  # version 00 has exactly four fields
        VALID + "x",
        f"cc-{TRACE}-{SPAN}-01x",
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-1",
        f" {VALID}",
        f"cc-{TRACE}-{SPAN}-01-" + "a" * 600,  # over any length a traceparent needs
        "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
        b"\xff" * 55,
    ],
)
def test_a_malformed_traceparent_is_none(raw: str | bytes | None) -> None:
    assert parse(raw) is None


@given(st.binary(max_size=700))
def test_no_bytes_make_parse_raise(raw: bytes) -> None:
    found = parse(raw)
    assert found is None or parse(found.traceparent) == found


@given(st.text(max_size=200))
def test_no_text_makes_parse_raise(raw: str) -> None:
    parse(raw)


def test_ids_only_continues_a_trace_with_a_new_span_or_starts_one() -> None:
    parent = TraceContext(TRACE, SPAN)
    child = IDS_ONLY.start("x", parent=parent).context
    assert (child.trace_id, child.sampled) == (TRACE, True)
    assert child.span_id != SPAN and len(child.span_id) == 16
    root = IDS_ONLY.start("x", parent=None).context
    assert parse(root.traceparent) == root
    assert root.trace_id != new_trace().trace_id


def test_batch_spans_give_each_job_its_records_trace_and_others_the_first() -> None:
    spans = BatchSpans(IDS_ONLY, name="verify process")
    spans.start(1, headers={"traceparent": VALID.encode()}, key=b"a", topic="t")
    spans.start(2, headers={"traceparent": b"00-bad"}, key=b"b", topic="t")
    spans.about(2, ["job-b"])
    first = parse(spans.traceparent(b"a"))
    second = parse(spans.traceparent(b"job-b"))
    assert first is not None and first.trace_id == TRACE and first.span_id != SPAN
    assert second is not None and second.trace_id != TRACE  # a bad header: a new trace
    assert spans.traceparent(b"batch-1") == spans.traceparent(b"a")
    stamped = spans.stamp(b"job-b", [("x", b"1")])
    assert stamped == [("x", b"1"), ("traceparent", spans.traceparent(b"job-b"))]
    kept = [("traceparent", VALID.encode())]
    assert spans.stamp(b"job-b", kept) == kept


def test_nothing_configured_means_ids_only_and_no_sdk_imported() -> None:
    code = (
        "import sys\n"
        "from anchorline.settings import Settings\n"
        "from anchorline.stream import runner, tracing\n"
        "from anchorline_gateway import app\n"
        "from anchorline_projector import service\n"
        "assert tracing.tracer_for(Settings.from_env({}), service='x') is tracing.IDS_ONLY\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_opentelemetrys_variables_turn_spans_on() -> None:
    assert not Settings.from_env({}).tracing
    assert not Settings.from_env({"OTEL_TRACES_EXPORTER": "none"}).tracing
    endpoint = Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert endpoint.span_exporters == {"otlp"}
    assert endpoint.otlp_traces_endpoint == "http://collector:4318/v1/traces"
    traces = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/t", "OTEL_TRACES_EXPORTER": ""}
    assert Settings.from_env(traces).otlp_traces_endpoint == "http://c:4318/t"
    both = Settings.from_env({"OTEL_TRACES_EXPORTER": "otlp,console"})
    assert both.span_exporters == {"otlp", "console"}
    ours = {"OTEL_TRACES_EXPORTER": "otlp", "ANCHORLINE_TRACES_EXPORTER": "none"}
    assert not Settings.from_env(ours).tracing
    with pytest.raises(ConfigurationError, match="TRACES_EXPORTER"):
        Settings.from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_the_otlp_exporter_goes_to_the_configured_endpoint() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from anchorline.stream import otel

    settings = Settings(traces_exporter="otlp", otlp_traces_endpoint="http://c:4318/v1/traces")
    (exporter,) = otel.exporters(settings)
    assert isinstance(exporter, OTLPSpanExporter)
    assert exporter._endpoint == "http://c:4318/v1/traces"
    exporter.shutdown()


def test_spans_are_exported_as_children_of_their_parent(tmp_path: Path) -> None:
    spans_file = tmp_path / "spans.jsonl"
    tracer = tracer_for(Settings(trace_file=spans_file), service="verifier")
    assert tracer is not IDS_ONLY
    span = tracer.start("verify process", parent=TraceContext(TRACE, SPAN), kind="consumer")
    span.note("anchorline.job_id", "job-1")
    span.end()
    root = tracer.start("POST gateway", parent=None, kind="server")
    root.end()
    tracer.close()
    exported = [json.loads(line) for line in spans_file.read_text().splitlines()]
    child, started = exported
    assert child["context"]["trace_id"] == "0x" + TRACE
    assert child["context"]["span_id"] == "0x" + span.context.span_id
    assert child["parent_id"] == "0x" + SPAN
    assert child["attributes"]["anchorline.job_id"] == "job-1"
    assert child["resource"]["attributes"]["service.name"] == "anchorline-verifier"
    assert started["parent_id"] is None
    assert started["context"]["trace_id"] == "0x" + root.context.trace_id
