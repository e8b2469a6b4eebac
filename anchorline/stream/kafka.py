"""confluent-kafka configuration shared by every service."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from anchorline.settings import Settings
from anchorline.stream.lag import LAG, STATS_INTERVAL_MS

POLL_INTERVAL_MARGIN_S = 60.0
TRANSACTION_TIMEOUT_MS = 10_000
# A transaction begun right after the last one commits finds the coordinator still writing the
# last one's markers: its AddOffsetsToTxn is refused (CONCURRENT_TRANSACTIONS) and retried after
# retry.backoff.ms, 100 by default (then doubling). Back to back, that held one transactional
# producer to 17 transactions a second (send_offsets p90 125 ms); at 10 ms, 36 to 112. The Java
# client retries these after 20 ms for the same reason (KAFKA-5477).
TRANSACTION_RETRY_BACKOFF_MS = 10
MAX_REPLICAS = 3


# librdkafka's own log lines go through Python logging (confluent-kafka's `logger` key), at
# the level librdkafka gives them, where the command's logging decides what shows.
KAFKA_LOG = logging.getLogger("librdkafka")


def security_config(settings: Settings) -> dict[str, Any]:
    """The client's login, merged into every client's config; nothing for PLAINTEXT."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    return {
        "security.protocol": settings.kafka_security_protocol,
        "sasl.mechanism": settings.kafka_sasl_mechanism,
        "sasl.username": settings.kafka_username,
        "sasl.password": settings.kafka_password,
    }


def base_config(settings: Settings) -> dict[str, Any]:
    """What every client shares: the login, and librdkafka's lines through Python logging."""
    return {"logger": KAFKA_LOG} | security_config(settings)


def client_config(settings: Settings) -> dict[str, Any]:
    """Where the broker is and how to log in: all an admin client or a plain reader needs."""
    return {"bootstrap.servers": settings.kafka_bootstrap} | base_config(settings)


def producer_config(settings: Settings, *, transactional_id: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = base_config(settings) | {
        "bootstrap.servers": settings.kafka_bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
    }
    if transactional_id:
        config["transactional.id"] = transactional_id
        # Work happens before a transaction begins, so one is open only to produce and commit;
        # a short timeout lets the coordinator abort a killed process's open transaction soon,
        # instead of holding read_committed consumers behind it for the default minute.
        config["transaction.timeout.ms"] = TRANSACTION_TIMEOUT_MS
        config["retry.backoff.ms"] = TRANSACTION_RETRY_BACKOFF_MS
    return config


def max_poll_interval_ms(settings: Settings) -> int:
    """A minute past the handling deadline: a stage that handles one batch too long exits
    (its watchdog) before its consumer is dropped from the group while it still works."""
    return int((settings.handling_deadline_s + POLL_INTERVAL_MARGIN_S) * 1000)


def consumer_config(settings: Settings, *, group_id: str) -> dict[str, Any]:
    return base_config(settings) | {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group_id,
        # Which process a group member is (the console's instances): a restart is a new pid.
        "client.id": f"{group_id}-{socket.gethostname()}-{os.getpid()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "max.poll.interval.ms": max_poll_interval_ms(settings),
        # librdkafka heartbeats from its own thread, so a live process never misses one; a
        # short session lets a killed process's partitions move on in seconds, not 45 s.
        "session.timeout.ms": int(settings.session_timeout_s * 1000),
        "heartbeat.interval.ms": max(500, int(settings.session_timeout_s * 1000 / 4)),
        # Lag per partition for the metrics, computed by librdkafka and handed over in poll().
        "statistics.interval.ms": STATS_INTERVAL_MS,
        "stats_cb": LAG.reporter(group_id),
    }


def transactional_id(service: str) -> str:
    """Unique per process: transactions fence by producer epoch, offsets by group generation."""
    return f"anchorline-{service}-{uuid.uuid4()}"


def default_replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `brokers`: one copy a broker,
    at most 3, of which 2 must have a write when there are 3, so that one broker may be down
    without refusing or losing an acknowledged write."""
    replicas = max(1, min(MAX_REPLICAS, brokers))
    return replicas, max(1, min(2, replicas - 1))


def replication(settings: Settings, *, brokers: int) -> tuple[int, int]:
    """The replication of anchorline's topics: the settings, or the default for `brokers`."""
    replicas = settings.replication_factor or default_replication(brokers)[0]
    return replicas, settings.min_insync_replicas or default_replication(replicas)[1]


def ensure_topics(settings: Settings, *, timeout: float = 30.0) -> list[str]:
    """Create every anchorline topic that is missing; returns the ones created."""
    admin = AdminClient(client_config(settings))
    metadata = admin.list_topics(timeout=timeout)
    wanted = [name for name in settings.topics.all() if name not in metadata.topics]
    if not wanted:
        return []
    replicas, min_isr = replication(settings, brokers=len(metadata.brokers))
    compacted = {
        settings.topics.replay_log: {"cleanup.policy": "compact"},
        # Compacted (a job's latest cancellation) and deleted past the retention: a stage reads
        # it whole at start and keeps it in memory, so it must not grow for ever.
        settings.topics.cancellations: {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(int(settings.cancellation_retention_s * 1000)),
        },
        # Read whole at every partition assignment: compacted often, so it stays small.
        settings.topics.deliveries: {
            "cleanup.policy": "compact",
            "segment.ms": "600000",
            "min.cleanable.dirty.ratio": "0.1",
        },
    }
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=settings.partitions,
                replication_factor=replicas,
                config={"min.insync.replicas": str(min_isr)} | compacted.get(name, {}),
            )
            for name in wanted
        ],
        operation_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return created
