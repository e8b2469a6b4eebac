"""SASL and ACLs on the local broker: SCRAM for clients, ACLs enforced by KRaft's authorizer."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

BROKER_USER = "broker"  # the broker itself, towards its own controller and coordinators
ADMIN_USER = "admin"  # the operator: provisions users, ACLs and topics; runs the dlq tool
MECHANISM = "SCRAM-SHA-512"
CLIENT_LISTENER = "SASL_PLAINTEXT"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"


def new_password() -> str:
    # Hex only: the password goes into JAAS quotes and kafka-storage's `[name=…,password=…]`.
    return secrets.token_hex(24)


@dataclass(frozen=True)
class BrokerSecurity:
    """The passwords of the broker's two super users; everyone else needs an ACL."""

    broker_password: str = field(repr=False)
    admin_password: str = field(repr=False)

    @classmethod
    def generate(cls) -> BrokerSecurity:
        return cls(broker_password=new_password(), admin_password=new_password())

    def admin_client(self) -> dict[str, Any]:
        """librdkafka settings that authenticate as the operator."""
        return client_security(username=ADMIN_USER, password=self.admin_password)

    def format_args(self) -> list[str]:
        """kafka-storage format options: SCRAM users must exist before the broker can log in."""
        users = {BROKER_USER: self.broker_password, ADMIN_USER: self.admin_password}
        args = []
        for user, password in users.items():
            args += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
        return args

    def server_properties(self, *, port: int, controller_port: int) -> dict[str, str]:
        """What replaces the PLAINTEXT listeners: SCRAM for clients and between brokers, PLAIN
        (a static user in the JAAS line) to the controller, which cannot read SCRAM users from
        the metadata it is itself serving."""
        broker, admin = f"User:{BROKER_USER}", f"User:{ADMIN_USER}"
        login = f'username="{BROKER_USER}" password="{self.broker_password}"'
        scram = f"{SCRAM_LOGIN} required {login};"
        plain = f'{PLAIN_LOGIN} required {login} user_{BROKER_USER}="{self.broker_password}";'

        listener = CLIENT_LISTENER.lower()
        return {
            "listeners": f"{CLIENT_LISTENER}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"{CLIENT_LISTENER}://127.0.0.1:{port}",
            "inter.broker.listener.name": CLIENT_LISTENER,
            "listener.security.protocol.map": (
                f"{CLIENT_LISTENER}:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
            ),
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "sasl.mechanism.controller.protocol": "PLAIN",
            f"listener.name.{listener}.sasl.enabled.mechanisms": MECHANISM,
            f"listener.name.{listener}.{MECHANISM.lower()}.sasl.jaas.config": scram,
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain,
            "authorizer.class.name": AUTHORIZER,
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"{broker};{admin}",
        }


def client_security(*, username: str, password: str) -> dict[str, Any]:
    """librdkafka settings for a SCRAM login on the local broker's client listener."""
    return {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": MECHANISM,
        "sasl.username": username,
        "sasl.password": password,
    }
