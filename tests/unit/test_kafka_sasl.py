"""The secured broker's configuration: SCRAM for clients, ACLs enforced, no anonymous access."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from anchorline.errors import ConfigurationError
from anchorline.infra.kafka import KafkaBroker
from anchorline.infra.kafka_sasl import BrokerSecurity

SECURITY = BrokerSecurity(broker_password="b" * 8, admin_password="a" * 8)


def properties() -> dict[str, str]:
    return SECURITY.server_properties(port=19092, controller_port=19093)


def test_acls_are_enforced_and_nobody_is_allowed_by_default() -> None:
    config = properties()
    assert config["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert config["allow.everyone.if.no.acl.found"] == "false"
    assert config["super.users"] == "User:broker;User:admin"


def test_no_listener_is_plaintext() -> None:
    config = properties()
    assert config["listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    protocols = dict(
        pair.split(":") for pair in config["listener.security.protocol.map"].split(",")
    )
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}
    assert config["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"


def test_the_broker_and_the_operator_are_formatted_in() -> None:
    assert SECURITY.format_args() == [
        "--add-scram",
        "SCRAM-SHA-512=[name=broker,password=bbbbbbbb]",
        "--add-scram",
        "SCRAM-SHA-512=[name=admin,password=aaaaaaaa]",
    ]


def test_passwords_stay_out_of_the_repr() -> None:
    assert "aaaa" not in repr(SECURITY)
    assert "bbbb" not in repr(SECURITY)


def test_generated_passwords_differ() -> None:
    one, two = BrokerSecurity.generate(), BrokerSecurity.generate()
    assert one.admin_password != two.admin_password != one.broker_password


def test_a_secured_brokers_state_is_closed_to_other_users(tmp_path: Path) -> None:
    state = tmp_path / "kafka"
    state.mkdir(mode=0o755)
    broker = KafkaBroker(state_dir=state, port=19092, controller_port=19093, security=SECURITY)
    broker._write_config()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert "StandardAuthorizer" in (state / "server.properties").read_text()


def test_a_plain_brokers_state_is_left_as_it_was(tmp_path: Path) -> None:
    state = tmp_path / "kafka"
    state.mkdir(mode=0o755)
    KafkaBroker(state_dir=state, port=19092, controller_port=19093)._write_config()
    assert stat.S_IMODE(state.stat().st_mode) == 0o755
    assert "authorizer" not in (state / "server.properties").read_text()


def test_a_broker_formatted_without_scram_users_is_not_started_secured(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.properties").write_text("node.id=1\n")
    broker = KafkaBroker(state_dir=tmp_path, port=19092, controller_port=19093, security=SECURITY)
    with pytest.raises(ConfigurationError, match="formatted without SCRAM users"):
        broker._prepare()
