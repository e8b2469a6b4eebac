"""Settings: a frozen object read from the environment once, in the entrypoint."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from anchorline.callbacks import check_url, networks
from anchorline.errors import ConfigurationError
from anchorline.events import Priority
from anchorline.stream.topics import Topics
from anchorline.tenants import RULE, is_tenant

PREFIX = "ANCHORLINE_"
# Deadlines and timeouts that mean nothing at zero or below.
POSITIVE = (
    "commit_deadline_s",
    "session_timeout_s",
    "shutdown_timeout_s",
    "idempotency_ttl_s",
    "content_read_timeout_s",
    "handling_deadline_s",
    "webhook_timeout_s",
    "scheduler_tick_s",
    "scheduler_lease_s",
    "schedule_min_interval_s",
    "cancellation_retention_s",
)
STAGE_TIMEOUTS = ("verify_timeout_s", "prove_timeout_s", "anchor_timeout_s", "notify_timeout_s")
BYTE_LIMITS = ("max_blob_bytes", "max_job_body_bytes", "max_batch_body_bytes")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL")
# s3://bucket/prefix: S3's rule for bucket names; a prefix of plain path characters.
BLOB_URL = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/([A-Za-z0-9._/-]{0,512}))?")
EXPORTERS = ("otlp", "console")
S3_PART_BYTES = (5 << 20, 5 << 30)  # S3's bounds on a multipart upload's parts


@dataclass(frozen=True)
class Settings:
    """Every knob of every service. Environment variable = ANCHORLINE_ + field name, upper case."""

    state_dir: Path = Path("var")
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_controller_port: int = 9093
    kafka_security_protocol: str = "PLAINTEXT"  # SASL_PLAINTEXT / SASL_SSL: log in as below
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password: str = field(default="", repr=False)
    # The gateway's dead-letter desk logs in as this (empty: as KAFKA_USERNAME).
    desk_kafka_username: str = ""
    desk_kafka_password: str = field(default="", repr=False)
    topic_prefix: str = "anchorline"
    schema_registry_url: str = ""  # Confluent wire format through this registry; empty: none
    partitions: int = 6  # 1, 2, 3 or 6 processes of a stage share them evenly
    # Copies of each partition of the topics anchorline creates; 0: one a broker, at most 3.
    replication_factor: int = 0
    # Copies a write needs before Kafka acknowledges it (acks=all); 0: 2 of 3 copies, else 1.
    min_insync_replicas: int = 0
    database_url: str = ""
    blob_dir: Path | None = None
    blob_url: str = ""  # s3://bucket/prefix: blobs in object storage, not in BLOB_DIR
    s3_endpoint_url: str = ""  # an S3-compatible server; empty: AWS's endpoint of S3_REGION
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""  # empty: boto3's own credentials (AWS_* variables, a role, …)
    s3_secret_access_key: str = field(default="", repr=False)
    s3_part_size: int = 8 << 20  # a blob larger than one part is uploaded in parts
    rpc_url: str = "http://127.0.0.1:8545"
    registry_address: str = ""
    trust_file: Path | None = None  # the trust document the gateway serves; `up` writes one
    chain_private_key: str = ""
    prover_private_key: str = ""
    chain_id: int = 0  # the anchoring chain's id, signed into attestations; 0 = not known
    confirmations: int = 1
    finality_depth: int = 12  # the watch re-checks an anchor until this deep; 0: no watch
    tx_timeout_s: float = 120.0
    stuck_tx_timeout_s: float = 60.0
    max_fee_gwei: float = 500.0
    priority_fee_gwei: float = 1.0
    fee_bump_percent: float = 12.5
    rpc_rate_per_s: float = 25.0
    send_rate_per_s: float = 2.0
    rpc_timeout_s: float = 10.0
    chain_poll_s: float = 0.5
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    batch_max_jobs: int = 1000
    batch_max_wait_s: float = 2.0
    poll_batch: int = 128  # a transaction's worth under load: see README, Tuning knobs
    running_status_after_s: float = 0.1  # a job in hand this long (or reporting progress) shows
    concurrency: int = 1
    verifier_processes: int = 0  # `anchorline up`'s verifiers; 0 = one a CPU that splits evenly
    shutdown_timeout_s: float = 30.0
    commit_deadline_s: float = 30.0  # a transaction commit blocked longer ends the process
    handling_deadline_s: float = 240.0  # a batch handled longer ends the process
    # A handler call longer than its stage's limit is a retryable failure of its records alone
    # (a prover call is a whole batch window of jobs; a chain-writer call, one root); 0: none.
    verify_timeout_s: float = 120.0
    prove_timeout_s: float = 120.0
    anchor_timeout_s: float = 180.0
    notify_timeout_s: float = 30.0
    # Webhooks (the notifier): `tenant=value,…`, `*` standing for any other tenant and for
    # jobs of none. Secrets are Standard Webhooks secrets, whsec_ + base64 of the HMAC key.
    webhook_urls: str = ""
    webhook_secrets: str = field(default="", repr=False)
    webhook_private_networks: str = ""  # CIDRs callbacks may reach besides public addresses
    webhook_timeout_s: float = 5.0  # each network step of a delivery (connect, send, answer)
    session_timeout_s: float = 10.0  # a consumer silent this long leaves its group
    # How long a cancellation is kept (the topic's retention, and each stage's memory of it):
    # longer than a request can wait in its topic (Kafka's default retention, 7 days), so that
    # no cancelled run is handled; a retry or replay is a later run, never cancelled by it.
    cancellation_retention_s: float = 7 * 86400.0
    max_attempts: int = 4
    max_deliveries: int = 3  # a record that ended the process this often is dead-lettered
    max_record_bytes: int = 960_000  # keep under the broker's and producer's message.max.bytes
    retry_delays_s: str = "5,30,300"
    priority_weights: str = "high=6,normal=3,low=1"  # a stage's share of picks when behind
    priority_defaults: str = ""  # tenant=priority (`*=` any other): a job naming none gets it
    chunk_size: int = 1 << 20
    content_roots: str = ""  # where file:// content URIs may point, `:` or `,` separated
    max_content_bytes: int = 4 << 30
    content_read_timeout_s: float = 60.0
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    api_keys: str = ""
    admin_keys: str = ""
    # Bounds on what an HTTP client may send (see the README's HTTP limits).
    max_blob_bytes: int = 1 << 30
    max_job_body_bytes: int = 1 << 20
    max_batch_body_bytes: int = 16 << 20
    idempotency_ttl_s: float = 24 * 3600.0  # how long an Idempotency-Key names its job
    # A job that ended and was created and last changed this long ago leaves the jobs table
    # with its history and kept request (the projector deletes them); 0 keeps every job.
    job_retention_s: float = 0.0
    # Schedules (POST /v1/schedules, the scheduler): how often the scheduler looks for due
    # ones, how often one schedule may fire at most, and how many a tenant may keep.
    scheduler_tick_s: float = 1.0
    scheduler_lease_s: float = 30.0  # an occurrence claimed and not published in this long is
    # published by another scheduler (keep it above a publish's 5 s)
    schedule_min_interval_s: float = 60.0
    max_schedules: int = 1000
    log_level: str = "INFO"
    metrics_port: int = 0  # a worker serves /metrics here; 0: not at all (`up` picks free ones)
    log_format: str = ""  # json | text; empty: json for services, text for other commands
    # OpenTelemetry spans, off unless one is set (else OTEL_TRACES_EXPORTER and the OTLP endpoint
    # variables, read by from_env): otlp and/or console, comma-separated; `none` for none.
    traces_exporter: str = ""
    otlp_traces_endpoint: str = ""  # e.g. http://collector:4318/v1/traces
    trace_file: Path | None = None  # spans also appended here, one JSON object a line
    # The `anchorline` command as a client of a gateway (submit, jobs, …).
    gateway_url: str = ""  # empty: http://HTTP_HOST:HTTP_PORT
    api_key: str = field(default="", repr=False)  # sent as Authorization: Bearer
    creator_key_file: Path | None = None  # `anchorline sign`'s key when --key-file is not given

    def __post_init__(self) -> None:
        for name in POSITIVE:
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{PREFIX}{name.upper()} must be above 0 seconds")
        if self.kafka_security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigurationError(
                f"{PREFIX}KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        if self.kafka_security_protocol != "PLAINTEXT" and not self.kafka_username:
            raise ConfigurationError(f"{PREFIX}KAFKA_USERNAME is needed with SASL")
        self.priority_weight_map  # noqa: B018 (a bad value stops the process at its start)
        self.priority_default_map  # noqa: B018
        if self.log_format not in ("", "json", "text"):
            raise ConfigurationError(f"{PREFIX}LOG_FORMAT must be json or text")
        if not self.span_exporters <= set(EXPORTERS):
            raise ConfigurationError(
                f"{PREFIX}TRACES_EXPORTER (or OTEL_TRACES_EXPORTER) takes {', '.join(EXPORTERS)}"
            )
        for name in STAGE_TIMEOUTS:
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{PREFIX}{name.upper()} must be 0 (no limit) or more")
        for name in BYTE_LIMITS:
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{PREFIX}{name.upper()} must be above 0 bytes")
        # Malformed webhook settings stop every service at start, not a delivery later.
        _ = (self.webhook_url_map, self.webhook_secret_map, self.webhook_networks)
        self._check_s3()
        self._check_replication()

    def _check_replication(self) -> None:
        replicas, min_isr = self.replication_factor, self.min_insync_replicas
        if replicas < 0 or min_isr < 0:
            raise ConfigurationError(
                f"{PREFIX}REPLICATION_FACTOR and {PREFIX}MIN_INSYNC_REPLICAS must be 0 (from "
                "the number of brokers) or more"
            )
        if replicas and min_isr > replicas:
            raise ConfigurationError(
                f"{PREFIX}MIN_INSYNC_REPLICAS ({min_isr}) above {PREFIX}REPLICATION_FACTOR "
                f"({replicas}) would refuse every write"
            )

    def _check_s3(self) -> None:
        match = BLOB_URL.fullmatch(self.blob_url)
        segments = (match.group(2) or "").split("/") if match else []
        if self.blob_url and (match is None or "." in segments or ".." in segments):
            raise ConfigurationError(
                f"{PREFIX}BLOB_URL must be s3://bucket/prefix (a bucket of 3 to 63 characters of"
                " a-z 0-9 . -; a prefix of A-Z a-z 0-9 . _ / -, no . or .. segment)"
            )
        low, high = S3_PART_BYTES
        if not low <= self.s3_part_size <= high:
            raise ConfigurationError(f"{PREFIX}S3_PART_SIZE must be from {low} to {high} bytes")
        if bool(self.s3_access_key_id) != bool(self.s3_secret_access_key):
            raise ConfigurationError(
                f"{PREFIX}S3_ACCESS_KEY_ID and {PREFIX}S3_SECRET_ACCESS_KEY go together"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for spec in fields(cls):
            raw = source.get(PREFIX + spec.name.upper())
            if raw is not None and raw != "":
                values[spec.name] = _parse(spec.name, str(spec.type), raw)
        values.update(overrides)
        return cls(**(_otel(source) | values))

    @property
    def desk(self) -> Settings:
        """These settings, logged in as the dead-letter desk when it has a login of its own."""
        if not self.desk_kafka_username:
            return self
        return replace(
            self, kafka_username=self.desk_kafka_username, kafka_password=self.desk_kafka_password
        )

    @property
    def span_exporters(self) -> set[str]:
        """Where spans go (otlp, console); empty: nowhere, and no span is recorded."""
        named = {part.strip() for part in self.traces_exporter.split(",") if part.strip()}
        return named - {"none"}

    @property
    def tracing(self) -> bool:
        return bool(self.span_exporters or self.trace_file)

    @property
    def retry_ladder(self) -> tuple[float, ...]:
        """The delay before attempt 2, 3, …; attempts past its end wait its last delay."""
        try:
            ladder = tuple(float(step) for step in self.retry_delays_s.split(",") if step.strip())
        except ValueError as exc:
            raise ConfigurationError(f"{PREFIX}RETRY_DELAYS_S={self.retry_delays_s!r}") from exc
        if not ladder or min(ladder) < 0:
            raise ConfigurationError(f"{PREFIX}RETRY_DELAYS_S needs delays >= 0 seconds")
        return ladder

    @property
    def priority_weight_map(self) -> dict[Priority, int]:
        """Each priority's weight, from `high=6,normal=3,low=1` (a priority left out keeps its
        default weight)."""
        weights = {Priority.HIGH: 6, Priority.NORMAL: 3, Priority.LOW: 1}
        for entry in filter(None, (part.strip() for part in self.priority_weights.split(","))):
            name, _, raw = entry.partition("=")
            if name.strip() not in Priority.__members__.values() or not raw.strip().isdigit():
                raise ConfigurationError(
                    f"{PREFIX}PRIORITY_WEIGHTS entries must be high|normal|low=<weight>"
                )
            weights[Priority(name.strip())] = int(raw)
        if not all(1 <= weight <= 1000 for weight in weights.values()):
            raise ConfigurationError(f"{PREFIX}PRIORITY_WEIGHTS: each weight is 1 to 1000")
        return weights

    @property
    def priority_default_map(self) -> dict[str, Priority]:
        """Tenant (or `*`) → the priority of its jobs that name none."""
        pairs = _pairs(self.priority_defaults, "PRIORITY_DEFAULTS")
        if any(value not in Priority.__members__.values() for value in pairs.values()):
            raise ConfigurationError(f"{PREFIX}PRIORITY_DEFAULTS values are high, normal or low")
        return {tenant: Priority(value) for tenant, value in pairs.items()}

    def stage_timeout_s(self, stage: str) -> float:
        """How long one call of the stage's handler may take (VERIFY_/PROVE_/ANCHOR_TIMEOUT_S)."""
        limit: float = getattr(self, f"{stage}_timeout_s")
        return limit

    @property
    def webhook_url_map(self) -> dict[str, str]:
        """Tenant (or `*`) → its default callback URL."""
        urls = _pairs(self.webhook_urls, "WEBHOOK_URLS")
        try:
            return {tenant: check_url(url) for tenant, url in urls.items()}
        except ValueError as exc:
            raise ConfigurationError(f"{PREFIX}WEBHOOK_URLS: {exc}") from exc

    @property
    def webhook_secret_map(self) -> dict[str, bytes]:
        """Tenant (or `*`) → the HMAC key of its webhook signatures."""
        keys = {}
        for tenant, secret in _pairs(self.webhook_secrets, "WEBHOOK_SECRETS").items():
            try:
                keys[tenant] = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
            except ValueError as exc:
                raise ConfigurationError(
                    f"{PREFIX}WEBHOOK_SECRETS: the secret of {tenant!r} is not whsec_<base64>"
                ) from exc
        return keys

    @property
    def webhook_networks(self) -> tuple[Any, ...]:
        try:
            return networks(self.webhook_private_networks)
        except ValueError as exc:
            raise ConfigurationError(f"{PREFIX}WEBHOOK_PRIVATE_NETWORKS: {exc}") from exc

    @property
    def api_key_tenants(self) -> dict[str, str]:
        """API key → tenant, from `key:tenant,key:tenant`; empty means the API is open."""
        pairs = {}
        for entry in filter(None, (part.strip() for part in self.api_keys.split(","))):
            key, _, tenant = entry.partition(":")
            if not key or not tenant:
                raise ConfigurationError(f"{PREFIX}API_KEYS entries must be key:tenant")
            if not is_tenant(tenant):
                raise ConfigurationError(f"{PREFIX}API_KEYS: tenant {tenant!r} is not {RULE}")
            pairs[key] = tenant
        return pairs

    @property
    def admin_key_set(self) -> frozenset[str]:
        """The operators' keys, from `key,key`: they alone read the global views."""
        return frozenset(filter(None, (part.strip() for part in self.admin_keys.split(","))))

    @property
    def content_root_paths(self) -> tuple[Path, ...]:
        """The directories file:// content URIs may name; none means file:// is refused."""
        return tuple(Path(p) for p in re.split(r"[:,]", self.content_roots) if p.strip())

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix, retry_levels=len(self.retry_ladder))

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.state_dir / 'anchorline.db').resolve()}"

    @property
    def gateway(self) -> str:
        """The gateway's base URL, as a client reaches it."""
        return (self.gateway_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    @property
    def blobs(self) -> Path:
        return self.blob_dir or self.state_dir / "blobs"

    @property
    def s3_blobs(self) -> tuple[str, str] | None:
        """(bucket, key prefix ending in `/` or empty) of BLOB_URL; None for the local directory."""
        match = BLOB_URL.fullmatch(self.blob_url)
        if match is None:
            return None
        prefix = "/".join(part for part in (match.group(2) or "").split("/") if part)
        return match.group(1), prefix + "/" if prefix else ""

    def as_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        env = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is not None:
                env[PREFIX + spec.name.upper()] = str(value)
        return env


def _otel(env: Mapping[str, str]) -> dict[str, str]:
    """OpenTelemetry's standard variables, as our settings (ours, when set, take precedence):
    an OTLP endpoint alone turns the OTLP exporter on, as in OpenTelemetry's own SDKs."""
    found = {}
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
    if not endpoint and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    if endpoint:
        found["otlp_traces_endpoint"] = endpoint
    exporter = env.get("OTEL_TRACES_EXPORTER", "") or ("otlp" if endpoint else "")
    if exporter:
        found["traces_exporter"] = exporter
    return found


def _pairs(text: str, name: str) -> dict[str, str]:
    """`key=value,key=value` (a value may hold `=`: base64 padding, a query)."""
    pairs = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = entry.partition("=")
        if not key or not value:
            raise ConfigurationError(f"{PREFIX}{name} entries must be tenant=value")
        if key != "*" and not is_tenant(key):
            raise ConfigurationError(f"{PREFIX}{name}: tenant {key!r} is not {RULE}")
        pairs[key] = value
    return pairs


def _parse(name: str, annotation: str, raw: str) -> Any:
    try:
        if annotation.startswith("int"):
            return int(raw)
        if annotation.startswith("float"):
            return float(raw)
        if "Path" in annotation:
            return Path(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{PREFIX}{name.upper()}={raw!r}: {exc}") from exc
    return raw
