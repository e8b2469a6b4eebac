"""Confluent's wire format against a real schema registry (Apicurio Registry's ccompat API)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from kafka_helpers import read_topic, signed_job

from anchorline.errors import Retryable, SerializationError
from anchorline.events import (
    JobKind,
    JobRequested,
    JobStatus,
    Priority,
    Stage,
    StageState,
    new_id,
)
from anchorline.infra.apicurio import ApicurioRegistry
from anchorline.infra.ports import free_port
from anchorline.settings import Settings
from anchorline.store.blobstore import FileBlobStore
from anchorline.stream import codec
from anchorline.stream.dlq import read_letters
from anchorline.stream.kafka import client_config
from anchorline.stream.registry_codec import SINGLE_OBJECT, RegistryCodec, decode, registry_client
from anchorline.stream.runner import StageRunner
from anchorline_projector.service import single_object
from anchorline_verifier.handler import VerifyHandler


@pytest.fixture
def registry(
    schema_registry: ApicurioRegistry, settings: Settings
) -> Iterator[tuple[RegistryCodec, SchemaRegistryClient]]:
    """Our codec on the real registry, and a client of Confluent's own, as another system's."""
    ours = RegistryCodec(registry_client(schema_registry.confluent_url), settings.topics)
    theirs = registry_client(schema_registry.confluent_url)
    yield ours, theirs
    ours.close()
    theirs.close()


def a_status(**changes: Any) -> JobStatus:
    fields = {"job_id": new_id(), "kind": JobKind.VERIFY, "stage": Stage.VERIFY}
    return JobStatus(**fields, state=StageState.QUEUED, **changes)


def with_field(schema: dict[str, Any], field: dict[str, Any]) -> str:
    changed = copy.deepcopy(schema)
    changed["fields"].append(field)
    return json.dumps(changed)


def foreign_serializer(client: SchemaRegistryClient, schema: str) -> AvroSerializer:
    """Confluent's own serializer, as another system would use it with the contract's schema."""
    return AvroSerializer(client, schema, conf={"auto.register.schemas": True})


def value_of(settings: Settings, topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


def test_events_go_through_the_registry_one_subject_a_topic(
    registry: tuple[RegistryCodec, SchemaRegistryClient], settings: Settings
) -> None:
    ours, theirs = registry
    status = a_status(result='{"status": "OK"}')
    framed = ours.encode(status)

    assert framed[0] == 0  # Confluent's magic byte, then the schema id
    subject = f"{settings.topics.job_status}-value"
    assert subject in theirs.get_subjects()
    assert theirs.get_compatibility(subject) == "BACKWARD"
    assert ours.decode_any(framed) == status
    # Confluent's own deserializer reads what we wrote.
    read = AvroDeserializer(theirs)(framed, value_of(settings, settings.topics.job_status))
    assert read is not None and read["job_id"] == status.job_id


def test_a_foreign_producer_using_confluents_serializer_is_read(
    registry: tuple[RegistryCodec, SchemaRegistryClient], settings: Settings
) -> None:
    ours, theirs = registry
    job = signed_job(settings, JobKind.VERIFY, b"from elsewhere")
    schema = json.dumps(codec.standalone_schema(JobRequested))
    framed = foreign_serializer(theirs, schema)(
        codec.record_of(job), value_of(settings, settings.topics.jobs_requested)
    )
    assert framed is not None
    assert decode(ours, framed, JobRequested) == job


def test_an_additive_change_is_accepted_and_old_records_are_still_read(
    registry: tuple[RegistryCodec, SchemaRegistryClient], settings: Settings
) -> None:
    ours, theirs = registry
    old = a_status()
    old_framed = ours.encode(old)  # registers the schema of today
    v2 = with_field(
        codec.standalone_schema(JobStatus),
        {"name": "region", "type": ["null", "string"], "default": None},
    )
    newer = foreign_serializer(theirs, v2)(
        {**codec.record_of(a_status()), "region": "eu-west"},
        value_of(settings, settings.topics.job_status),
    )
    assert newer is not None and newer[1:5] != old_framed[1:5]  # a new schema id

    assert decode(ours, newer, JobStatus).state is StageState.QUEUED  # the new field ignored
    assert ours.decode_any(old_framed) == old
    assert SINGLE_OBJECT.decode_any(codec.encode(old)) == old


def test_each_priority_topic_is_a_subject_with_the_rule_enforced(
    registry: tuple[RegistryCodec, SchemaRegistryClient], settings: Settings
) -> None:
    ours, theirs = registry
    job = signed_job(settings, JobKind.VERIFY, b"urgent content")
    for priority in (Priority.NORMAL, Priority.HIGH):
        assert ours.decode_any(ours.encode(replace(job, priority=priority))).priority is priority
    for lane in (settings.topics.jobs_requested, f"{settings.topics.jobs_requested}.high"):
        assert theirs.get_compatibility(f"{lane}-value") == "BACKWARD"


def test_an_incompatible_change_is_refused_by_the_registry(
    registry: tuple[RegistryCodec, SchemaRegistryClient], settings: Settings
) -> None:
    ours, theirs = registry
    ours.encode(a_status())
    subject = f"{settings.topics.job_status}-value"
    required = with_field(codec.standalone_schema(JobStatus), {"name": "region", "type": "string"})
    with pytest.raises(SchemaRegistryError) as refused:
        theirs.register_schema(subject, Schema(required, "AVRO"))
    assert refused.value.http_status_code == 409


def test_a_consumer_reads_both_framings_and_refuses_what_is_neither(
    registry: tuple[RegistryCodec, SchemaRegistryClient],
) -> None:
    ours, _ = registry
    status = a_status()
    assert ours.decode_any(codec.encode(status)) == status
    assert ours.decode_any(ours.encode(status)) == status
    with pytest.raises(SerializationError, match="not in the registry"):
        ours.decode_any(b"\x00" + (987654).to_bytes(4, "big") + b"\x02")
    with pytest.raises(SerializationError, match="bytes after the JobStatus body"):
        ours.decode_any(ours.encode(status) + b"smuggled")
    with pytest.raises(SerializationError, match="no schema registry is configured"):
        SINGLE_OBJECT.decode_any(ours.encode(status))


def test_a_registry_that_does_not_answer_is_retryable(settings: Settings) -> None:
    away = RegistryCodec(registry_client(f"http://127.0.0.1:{free_port()}"), settings.topics)
    with pytest.raises(Retryable):
        away.decode_any(b"\x00" + (1).to_bytes(4, "big") + b"\x02")
    with pytest.raises(Retryable):
        away.encode(a_status())
    away.close()


def test_a_stage_takes_both_framings_and_writes_through_the_registry(
    schema_registry: ApicurioRegistry, settings: Settings, running: Any
) -> None:
    settings = replace(settings, schema_registry_url=schema_registry.confluent_url)
    client = registry_client(schema_registry.confluent_url)
    plain = signed_job(settings, JobKind.VERIFY, b"single-object framed")
    foreign = signed_job(settings, JobKind.VERIFY, b"confluent framed")
    serializer = foreign_serializer(client, json.dumps(codec.standalone_schema(JobRequested)))
    producer = Producer(client_config(settings) | {"acks": "all"})
    topic = settings.topics.jobs_requested
    producer.produce(topic, key=plain.job_id.encode(), value=codec.encode(plain))
    framed = serializer(codec.record_of(foreign), value_of(settings, topic))
    producer.produce(topic, key=foreign.job_id.encode(), value=framed)
    assert producer.flush(30) == 0
    client.close()

    handler = VerifyHandler(FileBlobStore(settings.blobs), chunk_size=4096)
    running(StageRunner(handler, settings, service="verifier").run)

    ours = RegistryCodec(registry_client(schema_registry.confluent_url), settings.topics)

    def succeeded(messages: list[Any]) -> set[str]:
        events = [decode(ours, m.value(), JobStatus) for m in messages]
        return {e.job_id for e in events if e.state is StageState.SUCCEEDED}

    statuses = read_topic(
        settings, settings.topics.job_status, until=lambda m: len(succeeded(m)) == 2
    )
    assert succeeded(statuses) == {plain.job_id, foreign.job_id}
    assert {m.value()[0] for m in statuses} == {0}  # type: ignore[attr-defined]
    ours.close()


def test_a_confluent_framed_dead_letter_names_its_job(
    schema_registry: ApicurioRegistry, settings: Settings, running: Any
) -> None:
    settings = replace(settings, schema_registry_url=schema_registry.confluent_url)
    never = replace(
        signed_job(settings, JobKind.VERIFY, b"x"), content_uri="sha256:" + "ab" * 32
    )  # its content never arrives: retried, then dead
    client = registry_client(schema_registry.confluent_url)
    serializer = foreign_serializer(client, json.dumps(codec.standalone_schema(JobRequested)))
    topic = settings.topics.jobs_requested
    producer = Producer(client_config(settings) | {"acks": "all"})
    framed = serializer(codec.record_of(never), value_of(settings, topic))
    producer.produce(topic, key=never.job_id.encode(), value=framed)
    assert producer.flush(30) == 0
    client.close()
    handler = VerifyHandler(FileBlobStore(settings.blobs), chunk_size=4096)
    running(StageRunner(handler, settings, service="verifier").run)

    read_topic(settings, settings.topics.dead_letter(topic), until=lambda m: len(m) >= 1)
    (letter,) = list(read_letters(settings, "verify"))
    assert letter.value[0] == 0
    assert letter.job_ids() == [never.job_id]


def test_the_projector_keeps_a_framed_request_as_the_api_retry_reads_it(
    registry: tuple[RegistryCodec, SchemaRegistryClient], settings: Settings
) -> None:
    ours, _ = registry
    job = signed_job(settings, JobKind.VERIFY, b"kept for a retry")
    framed = ours.encode(job)
    kept = single_object(ours, framed)
    assert kept is not None and codec.decode(kept, JobRequested) == job
    plain = codec.encode(job)
    assert single_object(ours, plain) is plain  # already what the retry reads
    assert single_object(ours, framed[:5] + b"\xff" * 8) is None  # unreadable: not kept


def test_the_registrys_management_interface_is_on_loopback_at_a_port_of_its_own(
    schema_registry: ApicurioRegistry,
) -> None:
    # By default it would listen on 0.0.0.0:9000: anything else there (S3Proxy's default
    # port) stopped the registry from starting, and nothing of ours may listen beyond loopback.
    assert schema_registry.management_port != 9000
    answer = httpx.get(f"http://127.0.0.1:{schema_registry.management_port}/health/ready")
    assert answer.status_code == 200
    port = f"{schema_registry.management_port:04X}"
    wildcards = {f"{'0' * 8}:{port}", f"{'0' * 32}:{port}"}  # 0.0.0.0 and ::
    listening = [
        line.split()[1]
        for table in ("/proc/net/tcp", "/proc/net/tcp6")
        for line in Path(table).read_text().splitlines()[1:]
    ]
    assert f"{port}" in " ".join(listening)  # the table is read right: the port is there
    assert not wildcards & set(listening)
