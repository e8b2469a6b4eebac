"""The delay forwarder: holds each message of a stage's retry topics until it is due.

A message not yet due pauses its partition and seeks back to itself; the consumer keeps
polling (so it never exceeds max.poll.interval.ms), other partitions flow on, and the
partition resumes when its head is due. Due messages return to the stage's input topic,
headers intact, in one transaction with the consumed offsets.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, Message, TopicPartition

from anchorline.settings import Settings
from anchorline.stream import headers
from anchorline.stream.exactly_once import ExactlyOnce, Outgoing
from anchorline.stream.topics import Place, place_of

log = logging.getLogger(__name__)

# A record may be due a little later than its timestamp plus the longest rung: it was written
# by another process, whose clock may run ahead of the broker's.
CLOCK_LEEWAY_S = 600.0


@dataclass(frozen=True)
class Hold:
    """A partition held at `offset` until `due` (epoch seconds)."""

    offset: int
    due: float


def due_of(message: Message, *, max_wait_s: float = math.inf) -> float:
    """When the message is due (epoch seconds): its header says, but never later than
    `max_wait_s` after it was written, so that a forged far-off date cannot hold a partition
    for good; a malformed one is due at once."""
    found = headers.as_map(message.headers())
    due_ms = headers.lenient(lambda h: headers.number(h, headers.DUE, 0), found, 0)
    if math.isinf(max_wait_s):
        return due_ms / 1000
    _, written_ms = message.timestamp()
    return min(due_ms / 1000, written_ms / 1000 + max_wait_s)


def split_due(
    messages: Sequence[Message],
    *,
    now: float,
    held: set[Place],
    max_wait_s: float = math.inf,
) -> tuple[list[Message], dict[Place, Hold]]:
    """The messages to forward now, and the partitions to hold at their first early message."""
    ready: list[Message] = []
    holds: dict[Place, Hold] = {}
    for message in messages:
        place = place_of(message)
        if place in held or place in holds:
            continue  # behind a held message: it is fetched again after the resume
        due = due_of(message, max_wait_s=max_wait_s)
        if due > now:
            holds[place] = Hold(message.offset() or 0, due)
        else:
            ready.append(message)
    return ready, holds


class DelayForwarder:
    """Returns a stage's retry-topic messages to the stage when each is due."""

    def __init__(
        self,
        settings: Settings,
        *,
        service: str,
        source: str,
        lanes: Collection[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.lanes = frozenset(lanes)
        self.retry_topics = settings.topics.retries(source)
        self.loop = ExactlyOnce(
            settings, group_id=f"anchorline-{service}-delay", service=f"{service}-delay"
        )
        self.held: dict[Place, Hold] = {}
        self.max_wait_s = max(settings.retry_ladder) + CLOCK_LEEWAY_S
        self.clock = clock

    def run(self, stop: threading.Event) -> None:
        self.loop.start(self.retry_topics, on_revoke=self._forget)
        try:
            while not stop.is_set():
                self.poll_once()
        finally:
            self.loop.close()

    def poll_once(self) -> None:
        self._resume_due()
        messages = self.loop.poll(limit=500, timeout=0.2)
        ready, holds = split_due(
            messages, now=self.clock(), held=set(self.held), max_wait_s=self.max_wait_s
        )
        for place, hold in holds.items():
            partition = TopicPartition(place[0], place[1], hold.offset)
            self.loop.consumer.pause([partition])
            self.loop.consumer.seek(partition)
            self.held[place] = hold
        if ready:
            out = [self._returned(m) for m in ready]
            self.loop.commit(ready, out)

    def _returned(self, message: Message) -> Outgoing:
        """The message back on the topic it first came from (its priority's, when the stage has
        one a priority: a retry keeps its job's priority); the stage's own topic otherwise."""
        found = headers.as_map(message.headers())
        origin = headers.text(found, headers.ORIGINAL_TOPIC)
        topic = origin if origin in self.lanes else self.source
        return Outgoing(topic, message.key(), message.value() or b"", list(found.items()))

    def _resume_due(self) -> None:
        now = self.clock()
        for place, hold in list(self.held.items()):
            if hold.due <= now:
                self.loop.consumer.resume([TopicPartition(place[0], place[1])])
                del self.held[place]

    def _forget(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for partition in partitions:
            self.held.pop((partition.topic, partition.partition), None)
