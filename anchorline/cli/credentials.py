"""Kafka logins of a secured `anchorline up`: one password per principal, kept in the state dir.

A password is made once and kept (the broker's SCRAM users live in its storage, which outlives
a run); the files around it are written again on every run, as the bootstrap may change.
Each principal gets `<name>.properties` (librdkafka client properties, for another system's
producer) and `<name>.env` (the ANCHORLINE_ variables, for `anchorline` commands).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from anchorline.infra.kafka_sasl import (
    ADMIN_USER,
    BROKER_USER,
    MECHANISM,
    BrokerSecurity,
    new_password,
)
from anchorline.settings import PREFIX, Settings
from anchorline.stream.access import PRINCIPALS
from anchorline.stream.provision import ensure_principals

DIRECTORY = "kafka-credentials"
PASSWORD_KEY = "sasl.password="


@dataclass(frozen=True)
class Logins:
    """Every principal's password, read from or created in `directory`."""

    directory: Path
    passwords: dict[str, str] = field(repr=False)

    @classmethod
    def load_or_create(cls, state_dir: Path, principals: Iterable[str]) -> Logins:
        directory = state_dir / DIRECTORY
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
        passwords = {name: _stored(directory / f"{name}.properties") for name in principals}
        return cls(directory, passwords)

    def broker_security(self) -> BrokerSecurity:
        return BrokerSecurity(
            broker_password=self.passwords[BROKER_USER], admin_password=self.passwords[ADMIN_USER]
        )

    def settings_of(self, principal: str, settings: Settings) -> Settings:
        """`settings`, logged in as `principal` (SASL_PLAINTEXT unless they say SASL_SSL)."""
        plain = settings.kafka_security_protocol == "PLAINTEXT"
        return replace(
            settings,
            kafka_security_protocol="SASL_PLAINTEXT" if plain else settings.kafka_security_protocol,
            kafka_sasl_mechanism=MECHANISM,
            kafka_username=principal,
            kafka_password=self.passwords[principal],
        )

    def write(self, settings: Settings) -> None:
        """Write each principal's files for the broker `settings` names (owner-only: 0600)."""
        for principal in self.passwords:
            login = self.settings_of(principal, settings)
            _write_private(self.properties(principal), _properties(login))
            _write_private(self.directory / f"{principal}.env", _env(login))

    def properties(self, principal: str) -> Path:
        return self.directory / f"{principal}.properties"

    def env_file(self, principal: str) -> Path:
        return self.directory / f"{principal}.env"


def provision(settings: Settings, logins: Logins) -> None:
    """Every service's SCRAM user and ACLs on the broker `settings` logs in to as an operator,
    and their login files."""
    ensure_principals(settings, {name: logins.passwords[name] for name in PRINCIPALS})
    logins.write(settings)


def _stored(path: Path) -> str:
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith(PASSWORD_KEY):
                return line.removeprefix(PASSWORD_KEY)
    return new_password()


def _properties(login: Settings) -> str:
    return (
        f"# Kafka login of {login.kafka_username!r} (librdkafka client properties; a Java client\n"
        "# puts the same username and password in sasl.jaas.config with ScramLoginModule)\n"
        f"bootstrap.servers={login.kafka_bootstrap}\n"
        f"security.protocol={login.kafka_security_protocol}\n"
        f"sasl.mechanism={login.kafka_sasl_mechanism}\n"
        f"sasl.username={login.kafka_username}\n"
        f"{PASSWORD_KEY}{login.kafka_password}\n"
    )


def _env(login: Settings) -> str:
    names = (
        "kafka_bootstrap",
        "kafka_security_protocol",
        "kafka_sasl_mechanism",
        "kafka_username",
        "kafka_password",
        "topic_prefix",
    )
    return "".join(f"{PREFIX}{name.upper()}={getattr(login, name)}\n" for name in names)


def _write_private(path: Path, text: str) -> None:
    # Created 0600 from the start, so the password is never readable by others, even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
