from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from anchorline.errors import Poison, SerializationError
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
from anchorline.stream import codec

# Whole milliseconds: the schemas carry timestamp-millis.
AT = datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)
LATER = datetime(2024, 5, 1, 12, 31, 0, 456000, tzinfo=UTC)

EXAMPLES: list[Event] = [
    JobRequested(
        job_id="job-1",
        kind=JobKind.ANCHOR,
        content_uri="sha256:" + "ab" * 32,
        manifest='{"a":1}',
        signature="0x" + "11" * 65,
        submitted_at=AT,
        signature_scheme="eip712",
        tenant="acme",
        attributes={"team": "ledger", "ticket": "42"},
        priority=Priority.HIGH,
    ),
    JobRequested(
        job_id="job-2",
        kind=JobKind.VERIFY,
        content_uri="file:///tmp/x",
        manifest="{}",
        signature="0x",
        submitted_at=AT,
    ),
    ProveRequested(
        job_id="job-1",
        kind=JobKind.PROOF,
        content_sha256="0x" + "cd" * 32,
        manifest_sha256="0x" + "ef" * 32,
        signer="0x" + "12" * 20,
        submitted_at=AT,
        tenant="acme",
    ),
    AnchorRequested(batch_id="b-1", root="0x" + "77" * 32, job_ids=["a", "b"], requested_at=AT),
    AnchorRequested(batch_id="b-2", root="0x" + "78" * 32, job_ids=[], requested_at=AT),
    JobStatus(
        job_id="job-1",
        kind=JobKind.ANCHOR,
        stage=Stage.PROVE,
        state=StageState.RETRYING,
        occurred_at=AT,
        event_id="ev-1",
        final=False,
        attempt=2,
        generation=3,
        progress=40,
        result='{"x":1}',
        error="rpc down",
        error_class="Retryable",
        next_attempt_at=LATER,
        submitted_at=AT,
        tenant="acme",
        content_sha256="0x" + "cd" * 32,
        priority=Priority.LOW,
    ),
    JobStatus(
        job_id="job-3",
        kind=JobKind.VERIFY,
        stage=Stage.VERIFY,
        state=StageState.SUCCEEDED,
        occurred_at=AT,
        event_id="ev-2",
        final=True,
    ),
    NotifyRequested(
        job_id="job-7",
        kind=JobKind.PROOF,
        stage=Stage.PROVE,
        state=StageState.SUCCEEDED,
        finished_at=AT,
        record='{"job_id":"job-7"}',
        generation=2,
        tenant="acme",
        callback_url="https://hooks.example/anchorline?token=1",
    ),
    AnchorRequested("b-3", "0x" + "79" * 32, ["c"], AT, priority=Priority.LOW),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_event_type_round_trips(event: Event) -> None:
    decoded = codec.decode(codec.encode(event), type(event))
    assert decoded == event
    assert type(decoded) is type(event)


def test_enum_fields_decode_to_the_enum_types() -> None:
    decoded = codec.decode_any(codec.encode(EXAMPLES[5]))
    assert isinstance(decoded, JobStatus)
    assert type(decoded.kind) is JobKind
    assert type(decoded.stage) is Stage
    assert type(decoded.state) is StageState
    assert type(decoded.priority) is Priority


def test_every_event_type_is_covered_by_the_examples() -> None:
    assert {type(event) for event in EXAMPLES} == set(codec.EVENT_TYPES)


# --- the single-object framing, checked against the Avro specification -------------------------

EMPTY = 0xC15D213AA4D7A795  # the CRC-64-AVRO seed, from the specification's reference code


def _rabin_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    return table


RABIN_TABLE = _rabin_table()


def rabin_fingerprint(data: bytes) -> int:
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ RABIN_TABLE[(fp ^ byte) & 0xFF]
    return fp


PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
NAMED = {"record", "enum", "fixed"}


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _namespace_of(fullname: str) -> str | None:
    return fullname.rpartition(".")[0] or None


def _collect(schema: Any, namespace: str | None, out: dict[str, Any]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect(branch, namespace, out)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind in NAMED:
            full = _fullname(schema["name"], schema.get("namespace", namespace))
            out[full] = schema
            namespace = _namespace_of(full)
        for field in schema.get("fields", []):
            _collect(field["type"], namespace, out)
        for key in ("items", "values"):
            if key in schema:
                _collect(schema[key], namespace, out)
        if isinstance(kind, dict | list):
            _collect(kind, namespace, out)


def parsing_canonical_form(schema: Any, defined: dict[str, Any]) -> str:
    """The spec's Parsing Canonical Form of a schema standing on its own: a named type is
    written out in full where it first occurs and by its full name after that."""
    written: set[str] = set()

    def form(schema: Any, namespace: str | None) -> str:
        if isinstance(schema, list):
            return "[" + ",".join(form(branch, namespace) for branch in schema) + "]"
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return json.dumps(schema)
            full = _fullname(schema, namespace)
            if full in written:
                return json.dumps(full)
            return form(defined[full], _namespace_of(full))
        kind = schema["type"]
        if not isinstance(kind, str) or kind in PRIMITIVES:
            return form(kind, namespace)  # drops logicalType and every other attribute
        if kind == "array":
            return '{"type":"array","items":' + form(schema["items"], namespace) + "}"
        if kind == "map":
            return '{"type":"map","values":' + form(schema["values"], namespace) + "}"
        full = _fullname(schema["name"], schema.get("namespace", namespace))
        if full in written:
            return json.dumps(full)
        written.add(full)
        head = '{"name":' + json.dumps(full) + ',"type":' + json.dumps(kind)
        if kind == "enum":
            return head + ',"symbols":' + json.dumps(schema["symbols"], separators=(",", ":")) + "}"
        if kind == "fixed":
            return head + ',"size":' + str(int(schema["size"])) + "}"
        inner = _namespace_of(full)
        fields = [
            '{"name":' + json.dumps(field["name"]) + ',"type":' + form(field["type"], inner) + "}"
            for field in schema["fields"]
        ]
        return head + ',"fields":[' + ",".join(fields) + "]}"

    return form(schema, None)


def all_named_types() -> dict[str, Any]:
    defined: dict[str, Any] = {}
    for path in SCHEMAS_DIR.glob("*.avsc"):
        _collect(json.loads(path.read_text()), None, defined)
    return defined


def spec_fingerprint(event_type: type[Any]) -> bytes:
    schema = json.loads((SCHEMAS_DIR / f"{event_type.__name__}.avsc").read_text())
    canonical = parsing_canonical_form(schema, all_named_types())
    return rabin_fingerprint(canonical.encode()).to_bytes(8, "little")


def test_rabin_fingerprint_matches_the_specification_test_vector() -> None:
    fingerprint = rabin_fingerprint(b'"int"')
    assert fingerprint == 8247732601305521295
    # The top bit is clear, so the vector reads the same as a signed or an unsigned 64-bit int.
    assert fingerprint < 2**63
    assert int.from_bytes(fingerprint.to_bytes(8, "little"), "little", signed=True) == fingerprint


def test_a_named_type_from_another_file_is_written_out_in_full() -> None:
    schema = json.loads((SCHEMAS_DIR / "JobStatus.avsc").read_text())
    canonical = parsing_canonical_form(schema, all_named_types())
    assert '"type":{"name":"io.anchorline.v1.JobKind","type":"enum"' in canonical


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_frame_is_marker_then_little_endian_fingerprint_of_the_writer_schema(event: Event) -> None:
    data = codec.encode(event)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == spec_fingerprint(type(event))
    assert codec.schema_fingerprint(type(event)) == data[2:10]


def test_each_event_type_has_its_own_fingerprint() -> None:
    fingerprints = {codec.schema_fingerprint(t) for t in codec.EVENT_TYPES}
    assert len(fingerprints) == len(codec.EVENT_TYPES)


# --- poison ---------------------------------------------------------------------------------------

GOOD = codec.encode(EXAMPLES[5])


@pytest.mark.parametrize(
    "data",
    [
        None,
        b"",
        b"\xc3\x01",
        GOOD[: codec.HEADER_SIZE - 1],
        b"\x00\x01" + GOOD[2:],
        b"\xc3\x02" + GOOD[2:],
        b"\xc3\x01" + b"\x00" * 8 + GOOD[10:],
        GOOD[:2] + bytes([GOOD[2] ^ 0xFF]) + GOOD[3:],
        json.dumps({"job_id": "x"}).encode(),
    ],
    ids=[
        "none",
        "empty",
        "marker-only",
        "short-header",
        "wrong-magic",
        "wrong-version",
        "zero-fingerprint",
        "flipped-fingerprint",
        "json",
    ],
)
def test_undecodable_input_raises_serialization_error(data: bytes | None) -> None:
    with pytest.raises(SerializationError):
        codec.decode_any(data)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_truncation_of_the_body_raises_serialization_error(event: Event) -> None:
    data = codec.encode(event)
    for end in range(codec.HEADER_SIZE, len(data)):
        with pytest.raises(SerializationError):
            codec.decode_any(data[:end])


def test_out_of_range_enum_index_in_the_body_raises_serialization_error() -> None:
    request = EXAMPLES[0]
    data = codec.encode(request)
    # job_id "job-1" is a length byte then 5 bytes; the kind enum index follows.
    kind_at = codec.HEADER_SIZE + 1 + len(request.job_id)
    assert data[kind_at] == 2 * 2  # zig-zag of index 2, "anchor"
    with pytest.raises(SerializationError):
        codec.decode_any(data[:kind_at] + bytes([2 * 9]) + data[kind_at + 1 :])


def test_decoding_as_the_wrong_type_raises_serialization_error() -> None:
    with pytest.raises(SerializationError, match="expected JobRequested, got JobStatus"):
        codec.decode(GOOD, JobRequested)


def test_serialization_error_is_poison() -> None:
    with pytest.raises(Poison):
        codec.decode_any(b"nonsense!!")


def test_an_event_that_breaks_its_schema_cannot_be_encoded() -> None:
    broken = JobStatus(
        job_id="j", kind=JobKind.VERIFY, stage=Stage.VERIFY, state=StageState.QUEUED, attempt="one"
    )  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="cannot encode JobStatus"):
        codec.encode(broken)


def test_contract_document_lists_the_current_fingerprints() -> None:
    from anchorline.paths import ROOT

    document = (ROOT / "docs" / "contract.md").read_text()
    for event_type in codec.EVENT_TYPES:
        row = f"| {event_type.__name__} | `{codec.schema_fingerprint(event_type).hex()}` |"
        assert row in document, f"docs/contract.md lacks {row}"


def test_an_integer_too_large_for_its_field_cannot_be_encoded() -> None:
    status = JobStatus("a", JobKind.VERIFY, Stage.VERIFY, StageState.RUNNING, generation=10**30)
    with pytest.raises(SerializationError, match="cannot encode JobStatus"):
        codec.encode(status)


def test_bytes_after_the_body_make_a_message_undecodable() -> None:
    status = JobStatus("a", JobKind.VERIFY, Stage.VERIFY, StageState.RUNNING)
    with pytest.raises(SerializationError, match="3 bytes after the JobStatus body"):
        codec.decode_any(codec.encode(status) + b"\x00\x01\x02")


# --- records written by earlier schemas -----------------------------------------------------------


def _past_record(path_name: str, record: dict[str, Any]) -> bytes:
    import io

    import fastavro

    schema = fastavro.parse_schema(json.loads((SCHEMAS_DIR / "past" / path_name).read_text()))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, record)
    return (
        b"\xc3\x01"
        + bytes.fromhex(path_name.rsplit("-", 1)[1].removesuffix(".avsc"))
        + (body.getvalue())
    )


def test_a_status_written_before_the_cancelled_state_still_decodes() -> None:
    old = _past_record(
        "JobStatus-042eb2de2367cd69.avsc",
        {
            "event_id": "ev-9",
            "job_id": "job-9",
            "kind": "proof",
            "stage": "prove",
            "state": "dead",
            "final": True,
            "attempt": 4,
            "generation": 2,
            "progress": None,
            "result": None,
            "error": "gone",
            "error_class": "Retryable",
            "next_attempt_at": None,
            "submitted_at": AT,
            "occurred_at": LATER,
            "tenant": "acme",
            "content_sha256": None,
            "note": None,
        },
    )
    assert old[2:10] != codec.schema_fingerprint(JobStatus)
    status = codec.decode(old, JobStatus)
    assert (status.job_id, status.state, status.generation, status.occurred_at) == (
        "job-9",
        StageState.DEAD,
        2,
        LATER,
    )
    assert status.final and status.tenant == "acme"


def test_a_cancelled_status_round_trips() -> None:
    status = JobStatus("j", JobKind.VERIFY, Stage.VERIFY, StageState.CANCELLED, occurred_at=AT)
    assert codec.decode(codec.encode(status), JobStatus) == status


def test_every_past_schema_file_carries_its_own_fingerprint() -> None:
    from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

    paths = sorted((SCHEMAS_DIR / "past").glob("*.avsc"))
    assert paths
    for path in paths:
        schema = parse_schema(json.loads(path.read_text()))
        digest = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
        assert path.stem.endswith(f"-{digest}")


def _request_before_callback_url() -> bytes:
    return _past_record(
        "JobRequested-a6fb94f68c5c8b4e.avsc",
        {
            "job_id": "job-8",
            "kind": "verify",
            "content_uri": "sha256:" + "ab" * 32,
            "manifest": "{}",
            "signature": "0x",
            "signature_scheme": "eip191",
            "submitted_at": AT,
            "tenant": None,
            "attributes": {"a": "b"},
        },
    )


def test_a_request_written_before_callback_url_still_decodes() -> None:
    old = _request_before_callback_url()
    request = codec.decode(old, JobRequested)
    assert (request.job_id, request.attributes, request.callback_url) == ("job-8", {"a": "b"}, None)


BEFORE_PRIORITY = {
    JobRequested: "JobRequested-a91169b6c7737352.avsc",
    ProveRequested: "ProveRequested-747627b1e0be6187.avsc",
    AnchorRequested: "AnchorRequested-fc4e6e13f9ff9cd2.avsc",
    JobStatus: "JobStatus-34466783cc499da3.avsc",
}


@pytest.mark.parametrize("event", [e for e in EXAMPLES if type(e) in BEFORE_PRIORITY], ids=repr)
def test_a_record_written_before_priority_still_decodes_as_normal(event: Event) -> None:
    record = codec.record_of(event)
    del record["priority"]
    old = _past_record(BEFORE_PRIORITY[type(event)], record)
    decoded = codec.decode_any(old)
    default = None if isinstance(event, JobStatus) else Priority.NORMAL
    assert decoded == replace(event, priority=default)


def test_a_priority_outside_the_enum_cannot_be_encoded() -> None:
    request = replace(EXAMPLES[0], priority="urgent")  # type: ignore[type-var]
    with pytest.raises(SerializationError):
        codec.encode(request)


def test_a_request_written_before_schedule_id_still_decodes() -> None:
    old = _past_record(
        "JobRequested-a91169b6c7737352.avsc",
        {
            "job_id": "job-7",
            "kind": "anchor",
            "content_uri": "sha256:" + "cd" * 32,
            "manifest": "{}",
            "signature": "0x",
            "signature_scheme": "eip712",
            "submitted_at": AT,
            "tenant": "acme",
            "attributes": {},
            "callback_url": "https://example.com/hook",
        },
    )
    assert old[2:10] != codec.schema_fingerprint(JobRequested)
    request = codec.decode(old, JobRequested)
    assert (request.job_id, request.tenant, request.callback_url, request.schedule_id) == (
        "job-7",
        "acme",
        "https://example.com/hook",
        None,
    )


def test_a_request_of_a_schedule_round_trips_with_its_schedule_id() -> None:
    request = JobRequested(
        "s1:20261130T060000.000Z",
        JobKind.VERIFY,
        "sha256:" + "ab" * 32,
        "{}",
        "0x",
        AT,
        schedule_id="s1",
    )
    assert codec.decode(codec.encode(request), JobRequested) == request


# --- one field without the event (the projector's callback URLs) -----------------------------


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_a_field_read_alone_is_the_decoded_event_s_field(event: Event) -> None:
    data = codec.encode(event)
    decoded = codec.decode(data, type(event))
    for name in codec._field_names(type(event)):
        alone = codec.field_of(data, type(event), name)
        assert alone == getattr(decoded, name), name


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_a_field_is_refused_wherever_its_message_is(event: Event) -> None:
    """Every truncation, bytes after the body, another type: what decode refuses, field_of
    refuses, so a request the verifier dead-letters gives the projector no callback either."""
    data = codec.encode(event)
    name = codec._field_names(type(event))[0]
    spoiled = [data[:end] for end in range(len(data))] + [data + b"\x00"]
    for bad in spoiled:
        with pytest.raises(SerializationError):
            codec.decode(bad, type(event))
        with pytest.raises(SerializationError):
            codec.field_of(bad, type(event), name)
    other = next(kind for kind in codec.EVENT_TYPES if kind is not type(event))
    with pytest.raises(SerializationError, match=f"expected {other.__name__}"):
        codec.field_of(data, other, name)


def test_a_field_of_a_record_written_before_it_existed_is_its_default() -> None:
    old = _request_before_callback_url()
    assert codec.field_of(old, JobRequested, "callback_url") is None
    assert codec.field_of(old, JobRequested, "job_id") == "job-8"
