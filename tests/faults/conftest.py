from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from fault_harness import STAGE_SERVICES, Cluster

from anchorline.infra.anvil import ensure_node_tools
from anchorline.infra.kafka import ensure_kafka_jars
from anchorline.infra.ports import free_ports
from anchorline.infra.postgres import PostgresServer, ensure_postgres_installed

MakeCluster = Callable[..., Cluster]


def unavailable(reason: str) -> NoReturn:
    """As tests/conftest.py: skip on a laptop without the service, fail in CI."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def make_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MakeCluster]:
    """Start a whole system of its own; everything it started is stopped after the test.

    `own_postgres=True` gives it a PostgreSQL server of its own (to stop and start);
    otherwise it gets a fresh database in the session's server. `brokers`: Kafka nodes;
    `gateway`: the gateway runs too, at `cluster.gateway_url`.
    """
    try:
        ensure_kafka_jars()
        ensure_node_tools()
        ensure_postgres_installed()
    except (RuntimeError, OSError) as exc:
        unavailable(f"fault tests need Kafka, anvil and PostgreSQL: {exc}")
    clusters: list[Cluster] = []
    servers: list[PostgresServer] = []

    def make(
        *, own_postgres: bool = False, brokers: int = 1, gateway: bool = False, **overrides: Any
    ) -> Cluster:
        *ports, pg_port = free_ports(2 * brokers + 3)
        if own_postgres:
            server = PostgresServer(state_dir=tmp_path / "postgres", port=pg_port)
            servers.append(server)
            server.start()
            database_url = server.url
        else:
            database_url = request.getfixturevalue("postgres").new_database("faults")
        cluster = Cluster(
            tmp_path / f"cluster{len(clusters)}",
            ports=ports,
            database_url=database_url,
            settings_overrides=overrides,
        )
        cluster.postgres = servers[-1] if own_postgres else None
        clusters.append(cluster)
        cluster.start(STAGE_SERVICES + (("gateway",) if gateway else ()))
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.close()
        for server in servers:
            try:
                server.stop()
            finally:
                server.remove()
