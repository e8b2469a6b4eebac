"""What the pipeline holds right now: each stage's lag, its delay topics and dead letters."""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from anchorline.events import Stage
from anchorline.settings import Settings
from anchorline.stream.kafka import client_config
from anchorline.stream.topic_reader import watermarks

STAGE_SERVICES = {
    Stage.VERIFY: "verifier",
    Stage.PROVE: "prover",
    Stage.ANCHOR: "chain-writer",
    Stage.NOTIFY: "notifier",
}
CACHE_S = 1.0
COORDINATOR_WAIT_S = 10.0
COORDINATOR_MOVING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    }
)


class PipelineView(Protocol):
    def snapshot(self) -> dict[str, Any]: ...


class KafkaPipelineView:
    """Offsets read from the broker: end offsets against each consumer group's commits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = settings.topics
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < CACHE_S:
                return self._cached[1]
            view = self._read()
            self._cached = (time.monotonic(), view)
            return view

    def _read(self) -> dict[str, Any]:
        stages = {}
        for stage, service in STAGE_SERVICES.items():
            source = self.topics.request_topic(stage)
            stages[str(stage)] = {
                "topic": source,
                "lag": self._lag(f"anchorline-{service}", list(self.topics.lanes(stage))),
                "waiting_to_retry": self._lag(
                    f"anchorline-{service}-delay", self.topics.retries(source)
                ),
                "dead_letters": self._depth(self.topics.dead_letter(source)),
            }
        status = self.topics.job_status
        projector = {
            "topic": status,
            "lag": self._lag("anchorline-projector", [status]),
            "dead_letters": self._depth(self.topics.dead_letter(status)),
        }
        return {"stages": stages, "projector": projector}

    def _consumer(self, group: str) -> Consumer:
        return Consumer(
            client_config(self.settings)
            | {
                "group.id": group,
                "enable.auto.commit": False,
            }
        )

    def _partitions(self, consumer: Consumer, topic: str) -> list[TopicPartition]:
        metadata = consumer.list_topics(topic, timeout=5).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return []
        return [TopicPartition(topic, partition) for partition in metadata.partitions]

    def _lag(self, group: str, topics: list[str]) -> int:
        """Offsets in `topics` that `group` has not committed past (a transaction's commit
        marker takes an offset too, so a caught-up transactional stage may show 1 a partition)."""
        consumer = self._consumer(group)
        try:
            partitions = [p for topic in topics for p in self._partitions(consumer, topic)]
            if not partitions:
                return 0
            total = 0
            for committed in _committed(consumer, partitions):
                low, high = watermarks(consumer, committed, COORDINATOR_WAIT_S)
                start = committed.offset if committed.offset >= 0 else low
                total += max(0, high - start)
            return total
        finally:
            consumer.close()

    def _depth(self, topic: str) -> int:
        """Messages a topic holds (what retention has kept)."""
        consumer = self._consumer("anchorline-gateway-view")
        try:
            total = 0
            for partition in self._partitions(consumer, topic):
                low, high = watermarks(consumer, partition, COORDINATOR_WAIT_S)
                total += high - low
            return total
        finally:
            consumer.close()


def _committed(consumer: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
    """A group's committed offsets; the coordinator may need a moment to be found or to move."""
    deadline = time.monotonic() + COORDINATOR_WAIT_S
    while True:
        try:
            return list(consumer.committed(partitions, timeout=5))
        except KafkaException as exc:
            error = exc.args[0]
            transient = error.retriable() or error.code() in COORDINATOR_MOVING
            if not transient or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
