"""The live service processes: each consumer group's members, as the broker describes them.

A process that restarts (or loses its session) comes back as a new member: the gateway counts
the members it saw leave each group since it started.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from anchorline.events import utcnow
from anchorline.settings import Settings
from anchorline.stream.kafka import client_config

DESCRIBE_TIMEOUT_S = 5.0


@dataclass
class Seen:
    first: datetime
    last: datetime


@dataclass
class GroupWatch:
    """What the gateway has seen of one group: its members, and how many left."""

    seen: dict[str, Seen] = field(default_factory=dict)
    left: int = 0

    def update(self, live: list[str], now: datetime) -> None:
        gone = set(self.seen) - set(live)
        self.left += len(gone)
        for member in gone:
            del self.seen[member]
        for member in live:
            self.seen.setdefault(member, Seen(now, now)).last = now


class Members:
    """Describes the groups and remembers, per group, the members seen and those that left."""

    def __init__(self, settings: Settings) -> None:
        self.admin = AdminClient(client_config(settings))
        self.watches: dict[str, GroupWatch] = {}
        self._lock = threading.Lock()

    def describe(self, groups: list[str]) -> dict[str, dict[str, Any]]:
        """Group → its state, live members (client id, host, partitions, first seen) and how
        many members left since this gateway started; a group it may not describe: an error."""
        futures = self.admin.describe_consumer_groups(groups, request_timeout=DESCRIBE_TIMEOUT_S)
        now = utcnow()
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for group, future in futures.items():
                try:
                    description = future.result(DESCRIBE_TIMEOUT_S)
                except KafkaException as exc:
                    found[group] = self._unknown(group, exc.args[0])
                    continue
                found[group] = self._members(group, description, now)
        return found

    def _unknown(self, group: str, error: KafkaError) -> dict[str, Any]:
        """A group no process ever joined (newer brokers say so), or one we may not see."""
        watch = self.watches.setdefault(group, GroupWatch())
        if error.code() == KafkaError.GROUP_ID_NOT_FOUND:
            watch.update([], utcnow())
            return {"state": "dead", "members": [], "left": watch.left}
        return {"state": "unknown", "members": [], "left": watch.left, "error": error.str()}

    def _members(self, group: str, description: Any, now: datetime) -> dict[str, Any]:
        watch = self.watches.setdefault(group, GroupWatch())
        watch.update([member.member_id for member in description.members], now)
        members = [
            {
                "client_id": member.client_id,
                "host": member.host.lstrip("/"),
                "partitions": sorted(
                    f"{tp.topic}:{tp.partition}" for tp in member.assignment.topic_partitions
                ),
                "member_id": member.member_id,
                "since": watch.seen[member.member_id].first.isoformat(),
            }
            for member in description.members
        ]
        return {
            "state": str(description.state.name).lower(),
            "members": members,
            "left": watch.left,
        }
