"""`anchorline up` and the local servers refuse a port something else holds."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from anchorline.cli.up import check_ports, kafka_ports, needed_ports
from anchorline.errors import ConfigurationError
from anchorline.infra.kafka import KafkaBroker
from anchorline.infra.ports import free_ports, port_taken
from anchorline.infra.process import PortTaken
from anchorline.settings import Settings


@pytest.fixture
def held() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def settings_on(tmp_path: Path, **ports: int) -> Settings:
    kafka, controller, rpc, http = free_ports(4)
    chosen = {"kafka": kafka, "controller": controller, "rpc": rpc, "http": http} | ports
    return Settings(
        state_dir=tmp_path,
        kafka_bootstrap=f"127.0.0.1:{chosen['kafka']}",
        kafka_controller_port=chosen["controller"],
        rpc_url=f"http://127.0.0.1:{chosen['rpc']}",
        http_port=chosen["http"],
    )


def test_free_ports_pass(tmp_path: Path) -> None:
    check_ports(settings_on(tmp_path))


@pytest.mark.parametrize(
    ("which", "named"),
    [("kafka", "Kafka, ANCHORLINE_KAFKA_BOOTSTRAP"), ("http", "the gateway, ANCHORLINE_HTTP_PORT")],
)
def test_a_taken_port_is_named_with_its_setting(
    tmp_path: Path, held: int, which: str, named: str
) -> None:
    assert port_taken(held)
    with pytest.raises(PortTaken, match=rf"port {held} \({named}\) is taken"):
        check_ports(settings_on(tmp_path, **{which: held}))


def test_a_broker_is_not_started_on_a_taken_port(tmp_path: Path, held: int) -> None:
    broker = KafkaBroker(state_dir=tmp_path, port=held, controller_port=free_ports(1)[0])
    with pytest.raises(PortTaken, match=f"port {held}"):
        broker.start(timeout=5)
    assert broker._process is None


def test_a_broker_of_another_cluster_is_not_taken_for_ours(tmp_path: Path) -> None:
    broker = KafkaBroker(state_dir=tmp_path, port=1, controller_port=2)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.properties").write_text("version=1\ncluster.id=ours\n")
    broker._check_cluster("ours")
    with pytest.raises(RuntimeError, match="another Kafka cluster"):
        broker._check_cluster("theirs")


def test_three_brokers_take_ports_two_apart_and_each_is_checked(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path, kafka_bootstrap="127.0.0.1:9092", kafka_controller_port=9093
    )
    assert kafka_ports(settings, brokers=3) == [(9092, 9093), (9094, 9095), (9096, 9097)]
    named = {what for _, what, _ in needed_ports(settings, brokers=3)}
    assert {"Kafka node 3", "the Kafka controller node 3"} <= named


def test_a_taken_port_of_the_third_broker_is_named(tmp_path: Path, held: int) -> None:
    settings = settings_on(tmp_path, kafka=held - 4, controller=held - 3)
    with pytest.raises(PortTaken, match=rf"port {held} \(Kafka node 3"):
        check_ports(settings, brokers=3)


def test_broker_ports_that_overlap_are_refused(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9092", kafka_controller_port=9094)
    with pytest.raises(ConfigurationError, match="overlap"):
        kafka_ports(settings, brokers=3)
