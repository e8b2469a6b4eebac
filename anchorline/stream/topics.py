"""Topic names: part of the public contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from anchorline.events import (
    PIPELINE,
    AnchorRequested,
    Event,
    JobRequested,
    JobStatus,
    NotifyRequested,
    Priority,
    ProveRequested,
    Stage,
)

if TYPE_CHECKING:
    from confluent_kafka import Message

Place = tuple[str, int]
"""A topic and one of its partitions."""


def place_of(message: Message) -> Place:
    return (message.topic() or "", message.partition() or 0)


@dataclass(frozen=True)
class Topics:
    """Every topic anchorline uses, derived from one prefix."""

    prefix: str = "anchorline"
    retry_levels: int = 3

    @property
    def jobs_requested(self) -> str:
        return f"{self.prefix}.jobs.requested"

    @property
    def prove_requested(self) -> str:
        return f"{self.prefix}.prove.requested"

    @property
    def anchor_requested(self) -> str:
        return f"{self.prefix}.anchor.requested"

    @property
    def notify_requested(self) -> str:
        """Ended jobs whose webhooks the notifier calls."""
        return f"{self.prefix}.notify.requested"

    @property
    def job_status(self) -> str:
        return f"{self.prefix}.job.status"

    @property
    def replay_log(self) -> str:
        """Compacted record of replayed dead letters, keyed by their coordinates."""
        return f"{self.prefix}.dlq.replays"

    @property
    def cancellations(self) -> str:
        """Compacted record of cancelled jobs, keyed by job id (stream/cancellations.py)."""
        return f"{self.prefix}.jobs.cancelled"

    @property
    def deliveries(self) -> str:
        """Compacted count of uncommitted deliveries of each stage input partition's head."""
        return f"{self.prefix}.deliveries"

    def request_topic(self, stage: Stage) -> str:
        return {
            Stage.VERIFY: self.jobs_requested,
            Stage.PROVE: self.prove_requested,
            Stage.ANCHOR: self.anchor_requested,
            Stage.NOTIFY: self.notify_requested,
        }[stage]

    def lane(self, source: str, priority: Priority) -> str:
        """A pipeline stage's input topic for jobs of `priority`: normal jobs keep `source`
        itself, so that a publisher unaware of priorities goes on as before."""
        return source if priority is Priority.NORMAL else f"{source}.{priority}"

    def lanes(self, stage: Stage) -> dict[str, Priority]:
        """Every input topic of a stage, with the priority of its jobs (the notifier has one)."""
        source = self.request_topic(stage)
        if stage not in PIPELINE:
            return {source: Priority.NORMAL}
        return {self.lane(source, priority): priority for priority in Priority}

    def lane_topics(self) -> list[str]:
        """The pipeline stages' high and low input topics (their normal ones are stage_inputs)."""
        return [
            topic
            for stage in PIPELINE
            for topic in self.lanes(stage)
            if topic != self.request_topic(stage)
        ]

    def dead_letter(self, source: str) -> str:
        return f"{source}.dlq"

    def retry(self, source: str, level: int) -> str:
        """The delay topic of one rung of the retry ladder (1-based)."""
        return f"{source}.retry.{level}"

    def retries(self, source: str) -> list[str]:
        return [self.retry(source, level) for level in range(1, self.retry_levels + 1)]

    def stage_inputs(self) -> list[str]:
        return [self.request_topic(stage) for stage in Stage]

    def for_event(self, event: Event) -> str:
        if isinstance(event, JobRequested):
            return self.lane(self.jobs_requested, event.priority)
        if isinstance(event, ProveRequested):
            return self.lane(self.prove_requested, event.priority)
        if isinstance(event, AnchorRequested):
            return self.lane(self.anchor_requested, event.priority)
        if isinstance(event, JobStatus):
            return self.job_status
        if isinstance(event, NotifyRequested):
            return self.notify_requested
        raise TypeError(f"no topic for {type(event).__name__}")

    def all(self) -> list[str]:
        inputs = [*self.stage_inputs(), self.job_status]
        delays = [topic for source in self.stage_inputs() for topic in self.retries(source)]
        letters = [self.dead_letter(topic) for topic in inputs]
        # Lanes share their stage's delay and dead-letter topics: a record's origin header
        # names its lane, and the delay forwarder and a replay return it there.
        lanes = self.lane_topics()
        extra = [self.deliveries, self.replay_log, self.cancellations]
        return [*inputs, *delays, *letters, *lanes, *extra]


def key_of(event: Event) -> str:
    """The message key: the job id, or the root for a batch to anchor."""
    if isinstance(event, AnchorRequested):
        return event.root
    return event.job_id
