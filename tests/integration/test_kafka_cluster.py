"""Three KRaft nodes from the same jars: anchorline's topics replicated 3 times, 2 copies per
write, and exactly-once reads and writes that go on with one broker down."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from anchorline.infra.kafka import KafkaCluster
from anchorline.settings import Settings
from anchorline.stream.kafka import KAFKA_LOG, consumer_config, ensure_topics, producer_config

TIMEOUT_S = 60.0
RECORDS = 50


def cluster_settings(cluster: KafkaCluster, tmp_path: Path) -> Settings:
    return Settings(
        state_dir=tmp_path,
        kafka_bootstrap=cluster.bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}",
        partitions=3,
    )


def min_insync(admin: AdminClient, topics: list[str]) -> dict[str, str]:
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in topics]
    found = admin.describe_configs(resources, request_timeout=TIMEOUT_S)
    return {
        resource.name: future.result()["min.insync.replicas"].value
        for resource, future in found.items()
    }


def replicas(cluster: KafkaCluster, admin: AdminClient, topic: str) -> set[int]:
    cluster.leaders(topic)
    # A new topic reaches each broker's metadata a moment apart: `admin` may ask another broker
    # than the one that answered `leaders`, so ask until it knows the partitions too.
    deadline = time.monotonic() + TIMEOUT_S
    while not (metadata := admin.list_topics(topic, timeout=TIMEOUT_S).topics[topic]).partitions:
        assert time.monotonic() < deadline, f"no broker's metadata lists {topic}'s partitions"
        time.sleep(0.2)
    return {len(partition.replicas) for partition in metadata.partitions.values()}


def test_three_nodes_serve_and_topics_keep_three_copies(
    kafka_cluster: KafkaCluster, tmp_path: Path
) -> None:
    settings = cluster_settings(kafka_cluster, tmp_path)
    admin = AdminClient(kafka_cluster.admin_config() | {"logger": KAFKA_LOG})
    assert sorted(admin.list_topics(timeout=TIMEOUT_S).brokers) == [1, 2, 3]

    created = ensure_topics(settings)

    assert sorted(created) == sorted(settings.topics.all())
    copies = {name: replicas(kafka_cluster, admin, name) for name in created}
    assert copies == {name: {3} for name in created}
    assert set(min_insync(admin, created).values()) == {"2"}


def test_a_transaction_commits_and_reads_with_one_broker_down(
    kafka_cluster: KafkaCluster, tmp_path: Path
) -> None:
    settings = cluster_settings(kafka_cluster, tmp_path)
    ensure_topics(settings)
    topic = settings.topics.jobs_requested
    admin = AdminClient(kafka_cluster.admin_config() | {"logger": KAFKA_LOG})
    # The broker that leads partition 0: its followers must take over.
    leader = kafka_cluster.leaders(topic)[0]
    kafka_cluster.node(leader).kill()
    try:
        sent = produce_in_a_transaction(settings, topic)
        assert read_committed(settings, topic, count=len(sent)) == sent
        # The coordinator's log of transactions too: 3 copies, 2 needed per write.
        internal = "__transaction_state"
        assert replicas(kafka_cluster, admin, internal) == {3}
        assert min_insync(admin, [internal]) == {internal: "2"}
    finally:
        kafka_cluster.node(leader).start()
    assert sorted(admin.list_topics(timeout=TIMEOUT_S).brokers) == [1, 2, 3]


def produce_in_a_transaction(settings: Settings, topic: str) -> list[bytes]:
    config = producer_config(settings, transactional_id=f"cluster-{uuid.uuid4()}")
    producer = Producer(config | {"transaction.timeout.ms": 60_000})
    producer.init_transactions(TIMEOUT_S)
    producer.begin_transaction()
    values = [f"record {n}".encode() for n in range(RECORDS)]
    for value in values:
        producer.produce(topic, key=value, value=value)
    producer.commit_transaction(TIMEOUT_S)
    # An aborted one after it, which a read_committed reader must skip.
    producer.begin_transaction()
    producer.produce(topic, key=b"aborted", value=b"aborted")
    producer.abort_transaction(TIMEOUT_S)
    return values


def read_committed(settings: Settings, topic: str, *, count: int) -> list[bytes]:
    consumer = Consumer(consumer_config(settings, group_id=f"g-{uuid.uuid4()}"))
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        for _ in range(int(TIMEOUT_S)):
            for message in consumer.consume(num_messages=count, timeout=1.0):
                if message.error():
                    raise KafkaException(message.error())
                values.append(message.value())
            if len(values) >= count:
                break
    finally:
        consumer.close()
    return sorted(values, key=lambda value: int(value.split()[-1]))
