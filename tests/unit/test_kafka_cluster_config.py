"""A cluster's nodes: one static quorum, internal topics as replicated as the cluster allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from anchorline.errors import ConfigurationError
from anchorline.infra.kafka import KafkaCluster
from anchorline.settings import Settings
from anchorline.stream.kafka import default_replication, replication

PORTS = [(19092, 19093), (19094, 19095), (19096, 19097)]


def properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return dict(pairs)


def test_each_node_names_every_voter_and_keeps_three_copies_of_internal_topics(
    tmp_path: Path,
) -> None:
    cluster = KafkaCluster(state_dir=tmp_path, ports=PORTS)
    for node in cluster.nodes:
        node.state_dir.mkdir(parents=True)
        node._write_config()
    found = [properties(node.state_dir / "server.properties") for node in cluster.nodes]

    assert [p["node.id"] for p in found] == ["1", "2", "3"]
    assert {p["controller.quorum.voters"] for p in found} == {
        "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    }
    assert all("controller.quorum.bootstrap.servers" not in p for p in found)
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor"):
        assert {p[key] for p in found} == {"3"}
    assert {p["transaction.state.log.min.isr"] for p in found} == {"2"}
    assert len({node.cluster_id for node in cluster.nodes}) == 1
    assert cluster.bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"


def test_a_lone_node_keeps_one_copy_in_its_own_directory(tmp_path: Path) -> None:
    cluster = KafkaCluster(state_dir=tmp_path, ports=PORTS[:1])
    (node,) = cluster.nodes
    node._write_config()
    found = properties(tmp_path / "server.properties")
    assert found["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert found["transaction.state.log.replication.factor"] == "1"
    assert found["min.insync.replicas"] == "1"


@pytest.mark.parametrize(
    ("brokers", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2))]
)
def test_replication_defaults_from_the_number_of_brokers(
    brokers: int, expected: tuple[int, int]
) -> None:
    assert default_replication(brokers) == expected
    assert replication(Settings(), brokers=brokers) == expected


def test_replication_settings_win_over_the_default() -> None:
    assert replication(Settings(replication_factor=2), brokers=3) == (2, 1)
    assert replication(Settings(min_insync_replicas=3), brokers=3) == (3, 3)


def test_more_copies_per_write_than_copies_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="MIN_INSYNC_REPLICAS"):
        Settings(replication_factor=2, min_insync_replicas=3)
    with pytest.raises(ConfigurationError, match="REPLICATION_FACTOR"):
        Settings(replication_factor=-1)
