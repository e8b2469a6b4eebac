"""Confluent's wire format against a schema registry, beside the single-object encoding.

With ANCHORLINE_SCHEMA_REGISTRY_URL set, events are written as Confluent frames them: a zero
byte, the 4-byte big-endian id the registry gave the writer schema, then the Avro body, by
confluent-kafka's AvroSerializer, one subject per topic (`<topic>-value`, BACKWARD
compatibility set on it before the first schema is registered). Either framing is read, so
that a topic can move from one to the other: C3 01 is the single-object encoding, 00 a
registry id. A Confluent-framed body is decoded here rather than by AvroDeserializer, with the
single-object decoder's bounds (bytes after the body, unknown writers) kept; the writer
schema comes from the registry by id, and is resolved against our schema of the same record.
"""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from typing import Any, Protocol, TypeVar

import fastavro
from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from confluent_kafka.serialization import SerializationError as ConfluentSerializationError

from anchorline.errors import Retryable, SerializationError
from anchorline.events import Event
from anchorline.settings import Settings
from anchorline.stream import codec
from anchorline.stream.topics import Topics

CONFLUENT_MAGIC = 0
CONFLUENT_HEADER = 5
COMPATIBILITY = "BACKWARD"
# Each request to the registry; a timeout is retried REGISTRY_RETRIES times with backoff.
REGISTRY_TIMEOUT_S = 5.0
REGISTRY_RETRIES = 3
KNOWN_WRITERS = 256  # writer schemas kept by id; a hostile record cannot grow this past it
NOT_FOUND = (40401, 40403, 404)  # the registry's codes for a subject or schema it lacks

E = TypeVar("E", bound=Event)


class Codec(Protocol):
    """How events become record values and back."""

    def encode(self, event: Event) -> bytes: ...

    def decode_any(self, data: bytes | None) -> Event: ...

    def close(self) -> None: ...


class SingleObjectCodec:
    """The default: Avro single-object encoding, no registry (see codec.py)."""

    def encode(self, event: Event) -> bytes:
        return codec.encode(event)

    def decode_any(self, data: bytes | None) -> Event:
        if data and data[0] == CONFLUENT_MAGIC:
            raise SerializationError(
                "not single-object encoded Avro: a Confluent wire format frame (a schema"
                " registry id), and no schema registry is configured"
                " (ANCHORLINE_SCHEMA_REGISTRY_URL)"
            )
        return codec.decode_any(data)

    def close(self) -> None:
        """Nothing to release."""


SINGLE_OBJECT = SingleObjectCodec()


def registry_client(
    url: str, *, timeout_s: float = REGISTRY_TIMEOUT_S, retries: int = REGISTRY_RETRIES
) -> SchemaRegistryClient:
    """A registry client whose every request ends: Confluent's waits forever by default, and a
    registry that took a request and never answered held a process (a test, in CI) 30 minutes,
    till the server's idle timeout. A timeout is retried (max.retries), then is Retryable."""
    return SchemaRegistryClient({"url": url, "timeout": timeout_s, "max.retries": retries})


def codec_for(settings: Settings) -> Codec:
    """The registry's codec if SCHEMA_REGISTRY_URL is set, else the single-object encoding."""
    if not settings.schema_registry_url:
        return SINGLE_OBJECT
    return RegistryCodec(registry_client(settings.schema_registry_url), settings.topics)


def decode(codec_: Codec, data: bytes | None, expect: type[E]) -> E:
    """Decode a record value that must hold an event of type `expect`."""
    event = codec_.decode_any(data)
    if not isinstance(event, expect):
        raise SerializationError(f"expected {expect.__name__}, got {type(event).__name__}")
    return event


class RegistryCodec:
    """Writes the Confluent wire format through a schema registry, reads it and the
    single-object encoding."""

    def __init__(self, client: SchemaRegistryClient, topics: Topics) -> None:
        self.client = client
        self.topics = topics
        self.serializers: dict[type[Any], AvroSerializer] = {}
        self.subjects: set[str] = set()  # topics whose subject has its compatibility rule
        self.lock = threading.Lock()
        self.writers: OrderedDict[int, tuple[type[Any], Any, Any]] = OrderedDict()

    def encode(self, event: Event) -> bytes:
        topic = self.topics.for_event(event)
        name = type(event).__name__
        try:
            serializer = self._serializer(type(event), topic)
            context = SerializationContext(topic, MessageField.VALUE)
            framed = serializer(codec.record_of(event), context)
        except (ConfluentSerializationError, ValueError, TypeError, KeyError) as exc:
            raise SerializationError(f"cannot encode {name}: {exc}") from exc
        except SchemaRegistryError as exc:
            raise Retryable(f"the schema registry refused {name}'s schema: {exc}") from exc
        except Exception as exc:  # the registry's client raises its HTTP errors as they are
            raise Retryable(f"the schema registry did not answer for {name}: {exc}") from exc
        assert framed is not None
        return bytes(framed)

    def _serializer(self, event_type: type[Any], topic: str) -> AvroSerializer:
        with self.lock:  # a stage encodes statuses from its ticker thread too
            if topic not in self.subjects:  # each priority's topic is a subject of its own
                self._ensure_compatibility(f"{topic}-value")
                self.subjects.add(topic)
            serializer = self.serializers.get(event_type)
            if serializer is None:
                schema = json.dumps(codec.standalone_schema(event_type))
                conf = {"auto.register.schemas": True}
                serializer = AvroSerializer(self.client, schema, conf=conf)
                self.serializers[event_type] = serializer
            return serializer

    def _ensure_compatibility(self, subject: str) -> None:
        try:
            self.client.set_compatibility(subject_name=subject, level=COMPATIBILITY)
        except SchemaRegistryError as exc:
            # Apicurio refuses (409) to create the rule that another process is creating at
            # the same moment; what matters is that the subject ends up with it.
            if exc.http_status_code != 409:
                raise
            if self.client.get_compatibility(subject) != COMPATIBILITY:
                raise

    def decode_any(self, data: bytes | None) -> Event:
        if data is None or data[:1] != bytes([CONFLUENT_MAGIC]):
            return codec.decode_any(data)
        if len(data) < CONFLUENT_HEADER:
            raise SerializationError("message too short to carry the Confluent header")
        event_type, writer, reader = self._writer(int.from_bytes(data[1:CONFLUENT_HEADER], "big"))
        body = io.BytesIO(data[CONFLUENT_HEADER:])
        try:
            record = fastavro.schemaless_reader(body, writer, reader)
        except (ValueError, TypeError, EOFError, IndexError, KeyError, OverflowError) as exc:
            raise SerializationError(f"corrupt {event_type.__name__} body: {exc}") from exc
        except fastavro.read.SchemaResolutionError as exc:
            raise SerializationError(f"{event_type.__name__} writer cannot be read: {exc}") from exc
        trailing = len(data) - CONFLUENT_HEADER - body.tell()
        if trailing:
            raise SerializationError(f"{trailing} bytes after the {event_type.__name__} body")
        return codec.to_event(event_type, record)

    def _writer(self, schema_id: int) -> tuple[type[Any], Any, Any]:
        """The event type, writer schema and reader schema of a registry id."""
        known = self.writers.get(schema_id)
        if known is not None:
            self.writers.move_to_end(schema_id)
            return known
        try:
            found = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.error_code in NOT_FOUND or exc.http_status_code == 404:
                raise SerializationError(f"schema id {schema_id} is not in the registry") from exc
            raise Retryable(f"the schema registry did not give schema {schema_id}: {exc}") from exc
        except Exception as exc:  # the registry's client raises httpx's errors as they are
            raise Retryable(f"the schema registry did not answer for {schema_id}: {exc}") from exc
        known = self._resolved(schema_id, found.schema_str or "")
        self.writers[schema_id] = known
        if len(self.writers) > KNOWN_WRITERS:
            self.writers.popitem(last=False)
        return known

    def _resolved(self, schema_id: int, schema_str: str) -> tuple[type[Any], Any, Any]:
        try:
            writer = fastavro.parse_schema(json.loads(schema_str))
        except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
            raise SerializationError(f"schema id {schema_id} is not an Avro schema: {exc}") from exc
        name = writer.get("name", "") if isinstance(writer, dict) else ""
        event_type = codec.type_named(str(name).rsplit(".", 1)[-1])
        if event_type is None:
            raise SerializationError(f"schema id {schema_id} writes {name!r}, not an event")
        return event_type, writer, codec.reader_schema(event_type)

    def close(self) -> None:
        self.client.close()
