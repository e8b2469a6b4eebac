"""Every client config carries the login of the settings, and nothing extra without one."""

from __future__ import annotations

import pytest

from anchorline.settings import Settings
from anchorline.stream.kafka import (
    client_config,
    consumer_config,
    producer_config,
    security_config,
)

SECURED = Settings(
    kafka_bootstrap="broker:9094",
    kafka_security_protocol="SASL_PLAINTEXT",
    kafka_username="verifier",
    kafka_password="secret",
)
LOGIN = {
    "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "verifier",
    "sasl.password": "secret",
}
BUILDERS = {
    "client": client_config,
    "consumer": lambda s: consumer_config(s, group_id="g"),
    "producer": producer_config,
    "transactional producer": lambda s: producer_config(s, transactional_id="anchorline-x-1"),
}


def test_plaintext_adds_nothing() -> None:
    assert security_config(Settings()) == {}
    plain = client_config(Settings())
    assert plain == {"bootstrap.servers": "127.0.0.1:9092", "logger": plain["logger"]}


@pytest.mark.parametrize("kind", BUILDERS)
def test_every_client_config_carries_the_login(kind: str) -> None:
    config = BUILDERS[kind](SECURED)
    assert config["bootstrap.servers"] == "broker:9094"
    assert {key: config.get(key) for key in LOGIN} == LOGIN


@pytest.mark.parametrize("kind", BUILDERS)
def test_a_plaintext_client_config_has_no_sasl_keys(kind: str) -> None:
    config = BUILDERS[kind](Settings())
    assert not [key for key in config if key.startswith(("sasl.", "security."))]


def test_a_transactional_producer_retries_a_refused_transaction_step_soon() -> None:
    """Back to back, a transaction's AddOffsetsToTxn is refused while the last one's markers
    are written; librdkafka's 100 ms retry put a tenth of a second on a commit (kafka.py)."""
    transactional = producer_config(Settings(), transactional_id="anchorline-x-1")
    assert transactional["retry.backoff.ms"] <= 20
    assert "retry.backoff.ms" not in producer_config(Settings())
