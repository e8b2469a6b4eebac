"""Logins of a secured `anchorline up`: kept across runs, readable by the owner alone."""

from __future__ import annotations

import stat
from pathlib import Path

from anchorline.cli.credentials import Logins
from anchorline.cli.up import SERVICES, Supervisor
from anchorline.settings import Settings

PRINCIPALS = ["admin", "verifier", "external-producer"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_owner_only_and_carry_the_login(tmp_path: Path) -> None:
    logins = Logins.load_or_create(tmp_path, PRINCIPALS)
    broker = Settings(kafka_bootstrap="127.0.0.1:19092", topic_prefix="staging")
    logins.write(broker)
    assert mode(logins.directory) == 0o700
    properties = logins.properties("external-producer")
    assert mode(properties) == 0o600
    assert mode(logins.env_file("admin")) == 0o600
    lines = properties.read_text().splitlines()
    assert "bootstrap.servers=127.0.0.1:19092" in lines
    assert "security.protocol=SASL_PLAINTEXT" in lines
    assert "sasl.mechanism=SCRAM-SHA-512" in lines
    assert "sasl.username=external-producer" in lines
    assert f"sasl.password={logins.passwords['external-producer']}" in lines
    env = dict(line.split("=", 1) for line in logins.env_file("admin").read_text().splitlines())
    assert Settings.from_env(env) == logins.settings_of("admin", broker)


def test_passwords_are_kept_across_runs_and_differ_between_principals(tmp_path: Path) -> None:
    first = Logins.load_or_create(tmp_path, PRINCIPALS)
    first.write(Settings())
    again = Logins.load_or_create(tmp_path, PRINCIPALS)
    assert again.passwords == first.passwords
    assert len(set(first.passwords.values())) == len(PRINCIPALS)


def test_a_file_already_open_to_others_is_closed_again(tmp_path: Path) -> None:
    logins = Logins.load_or_create(tmp_path, PRINCIPALS)
    logins.write(Settings())
    logins.properties("verifier").chmod(0o644)
    logins.write(Settings())
    assert mode(logins.properties("verifier")) == 0o600


def test_each_service_runs_with_its_own_login_and_none_with_the_operators(tmp_path: Path) -> None:
    logins = Logins.load_or_create(tmp_path, ["admin", *SERVICES])
    operator = logins.settings_of("admin", Settings())
    supervisor = Supervisor(
        operator, logins={service: logins.settings_of(service, operator) for service in SERVICES}
    )
    for service in SERVICES:
        env = supervisor.envs[service]
        assert env["ANCHORLINE_KAFKA_USERNAME"] == service
        assert env["ANCHORLINE_KAFKA_PASSWORD"] == logins.passwords[service]
        assert env["ANCHORLINE_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"


def test_without_logins_every_service_gets_the_same_settings() -> None:
    supervisor = Supervisor(Settings(partitions=5))
    assert {env["ANCHORLINE_PARTITIONS"] for env in supervisor.envs.values()} == {"5"}
    assert set(supervisor.envs) == set(SERVICES)
    assert {env["ANCHORLINE_KAFKA_SECURITY_PROTOCOL"] for env in supervisor.envs.values()} == {
        "PLAINTEXT"
    }
