"""Users and ACLs on a secured broker, from the policy in `stream/access.py`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from anchorline.settings import Settings
from anchorline.stream.access import Grant, grants
from anchorline.stream.kafka import client_config

SCRAM_ITERATIONS = 8192


def ensure_principals(
    settings: Settings, passwords: Mapping[str, str], *, timeout: float = 30.0
) -> None:
    """Give each principal in `passwords` its SCRAM password and exactly its ACLs.

    `settings` logs in as the operator (a super user). Idempotent: a password is overwritten,
    an ACL that exists already is kept, and one the policy no longer grants (an older
    version's) is removed. Principals are per cluster, not per topic prefix.
    """
    admin = AdminClient(client_config(settings))
    set_passwords(admin, passwords, timeout=timeout)
    wanted = [
        binding(principal, grant)
        for principal in passwords
        for grant in grants(principal, settings.topics)
    ]
    create_acls(admin, wanted, timeout=timeout)
    stale = [
        found
        for principal in passwords
        for found in held_by(admin, principal, timeout=timeout)
        if found not in wanted
    ]
    if stale:
        revoke(admin, stale, timeout=timeout)


def held_by(admin: AdminClient, principal: str, *, timeout: float) -> list[AclBinding]:
    """Every ACL that names `principal`."""
    # None matches any name or host (the stubs say str, the library takes None).
    everything = AclBindingFilter(
        ResourceType.ANY,
        None,  # type: ignore[arg-type]
        ResourcePatternType.ANY,
        f"User:{principal}",
        None,  # type: ignore[arg-type]
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    found: list[AclBinding] = admin.describe_acls(everything, request_timeout=timeout).result(
        timeout
    )
    return found


def set_passwords(admin: AdminClient, passwords: Mapping[str, str], *, timeout: float) -> None:
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, password.encode())
        for user, password in passwords.items()
    ]
    _wait(admin.alter_user_scram_credentials(upserts, request_timeout=timeout).values(), timeout)


def create_acls(admin: AdminClient, bindings: list[AclBinding], *, timeout: float) -> None:
    _wait(admin.create_acls(bindings, request_timeout=timeout).values(), timeout)


def binding(principal: str, grant: Grant) -> AclBinding:
    pattern = ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL
    return AclBinding(
        ResourceType[grant.resource.value],
        grant.name,
        pattern,
        f"User:{principal}",
        "*",
        AclOperation[grant.operation.value],
        AclPermissionType.ALLOW,
    )


def revoke(admin: AdminClient, bindings: list[AclBinding], *, timeout: float) -> None:
    exactly = [_matching(found) for found in bindings]
    _wait(admin.delete_acls(exactly, request_timeout=timeout).values(), timeout)


def _matching(found: AclBinding) -> AclBindingFilter:
    return AclBindingFilter(
        found.restype,
        found.name,
        found.resource_pattern_type,
        found.principal,
        found.host,
        found.operation,
        found.permission_type,
    )


def _wait(futures: Iterable[Future[Any]], timeout: float) -> None:
    for future in futures:
        future.result(timeout)  # raises the broker's refusal
