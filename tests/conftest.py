from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from anchorline.infra.anvil import DEV_ADDRESSES, DEV_PRIVATE_KEYS, AnvilChain, ensure_node_tools
from anchorline.infra.apicurio import ApicurioRegistry, ensure_apicurio
from anchorline.infra.kafka import KafkaBroker, KafkaCluster, ensure_kafka_jars
from anchorline.infra.ports import free_ports
from anchorline.infra.postgres import PostgresServer, ensure_postgres_installed
from anchorline.infra.s3proxy import S3Proxy, ensure_s3proxy_jars
from anchorline.proof.registry import deploy_registry

TESTS_DIR = Path(__file__).parent
SUITES = ("unit", "integration", "e2e", "fuzz")


def pytest_configure(config: pytest.Config) -> None:
    # A run ended by SIGTERM (a CI timeout, `kill`) stops what its fixtures started, as Ctrl-C
    # does: Python's default would end at once, leaving brokers and stacks (each in a session
    # of its own) running, and their supervisors restarting their services.
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        suite = (
            item.path.relative_to(TESTS_DIR).parts[0] if item.path.is_relative_to(TESTS_DIR) else ""
        )
        if suite in SUITES:
            item.add_marker(getattr(pytest.mark, suite))


def unavailable(reason: str) -> NoReturn:
    """Skip on a laptop without the service; in CI a missing service is a failure."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    try:
        ensure_kafka_jars()
    except (RuntimeError, OSError) as exc:
        unavailable(f"Kafka broker unavailable: {exc}")
    port, controller_port = free_ports(2)
    state_dir = tmp_path_factory.mktemp("kafka")
    with KafkaBroker(state_dir=state_dir, port=port, controller_port=controller_port) as broker:
        yield broker


def three_node_ports() -> list[tuple[int, int]]:
    """(client port, controller port) of each node of a three-node Kafka cluster."""
    ports = free_ports(6)
    return [(ports[n], ports[n + 1]) for n in range(0, 6, 2)]


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three KRaft nodes (broker and controller each), one quorum: for the module that asks."""
    try:
        ensure_kafka_jars()
    except (RuntimeError, OSError) as exc:
        unavailable(f"Kafka broker unavailable: {exc}")
    state_dir = tmp_path_factory.mktemp("kafka-cluster")
    with KafkaCluster(state_dir=state_dir, ports=three_node_ports()) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    try:
        ensure_postgres_installed()
    except (RuntimeError, OSError) as exc:
        unavailable(f"PostgreSQL unavailable: {exc}")
    (port,) = free_ports(1)
    server = PostgresServer(state_dir=tmp_path_factory.mktemp("postgres"), port=port)
    try:
        with server:
            yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilChain]:
    try:
        ensure_node_tools()
    except (RuntimeError, OSError) as exc:
        unavailable(f"anvil unavailable: {exc}")
    (port,) = free_ports(1)
    with AnvilChain(state_dir=tmp_path_factory.mktemp("anvil"), port=port) as chain:
        yield chain


@pytest.fixture(scope="session")
def registry_address(anvil: AnvilChain) -> str:
    return deploy_registry(anvil.url, DEV_PRIVATE_KEYS[0], writers=DEV_ADDRESSES)


@pytest.fixture(scope="session")
def s3proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Proxy]:
    """A real S3 API server (S3Proxy on its filesystem backend) on a free port."""
    try:
        ensure_s3proxy_jars()
    except (RuntimeError, OSError) as exc:
        unavailable(f"S3Proxy unavailable: {exc}")
    (port,) = free_ports(1)
    state_dir = tmp_path_factory.mktemp("s3proxy")
    secret = secrets.token_hex(16)
    with S3Proxy(state_dir=state_dir, port=port, access_key="tests", secret_key=secret) as server:
        yield server


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApicurioRegistry]:
    """A real schema registry (Apicurio Registry, Confluent-compatible API) on a free port."""
    try:
        ensure_apicurio()
    except (RuntimeError, OSError) as exc:
        unavailable(f"Apicurio Registry unavailable: {exc}")
    (port,) = free_ports(1)
    with ApicurioRegistry(state_dir=tmp_path_factory.mktemp("apicurio"), port=port) as registry:
        yield registry
