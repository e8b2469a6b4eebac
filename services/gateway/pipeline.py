"""What the pipeline holds: each stage's lag, its delay topics and dead letters, in messages;
its live processes; and samples of its lag and throughput over the last minutes."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from anchorline.errors import IncompleteRead
from anchorline.events import Stage, utcnow
from anchorline.settings import Settings
from anchorline.stream.kafka import client_config
from anchorline.stream.topic_reader import watermarks
from anchorline_gateway import counts
from anchorline_gateway.counts import Place
from anchorline_gateway.members import Members

log = logging.getLogger(__name__)

STAGE_SERVICES = {
    Stage.VERIFY: "verifier",
    Stage.PROVE: "prover",
    Stage.ANCHOR: "chain-writer",
    Stage.NOTIFY: "notifier",
}
CACHE_S = 1.0
SAMPLE_S = 5.0  # a sample of every stage's lag and throughput, once someone asked for one
HISTORY = 120  # samples kept: ten minutes
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

    def close(self) -> None: ...


class KafkaPipelineView:
    """Each stage's messages waiting (read, not offsets: counts.py), its processes (group
    members) and, from the first snapshot on, a sample every SAMPLE_S kept for HISTORY
    samples: throughput and lag over time.

    `settings` describes offsets and groups; `reader` reads messages to count them (the dead-
    letter desk's login: the gateway's own reads no message)."""

    def __init__(
        self, settings: Settings, *, reader: Settings | None = None, sample_s: float = SAMPLE_S
    ) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.reader_settings = reader or settings
        self.sample_s = sample_s
        self.members = Members(settings)
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._committed: dict[str, dict[Place, int]] = {}  # at the last sample, by group
        self._sampled_at = 0.0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def snapshot(self) -> dict[str, Any]:
        self._sample_from_now_on()
        with self._lock:
            if not (self._cached and time.monotonic() - self._cached[0] < CACHE_S):
                self._cached = (time.monotonic(), self._sample())
            return {**self._cached[1], "history": list(self.history)}

    def close(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(30)

    def _sample_from_now_on(self) -> None:
        if self._sampler is None:
            self._sampler = threading.Thread(target=self._sampling, name="pipeline", daemon=True)
            self._sampler.start()

    def _sampling(self) -> None:
        while not self._stop.wait(self.sample_s):
            try:
                self.snapshot()
            except (KafkaException, IncompleteRead) as exc:
                log.info("pipeline sample not taken: %s", exc)

    def _sample(self) -> dict[str, Any]:
        """A fresh view, and its sample appended to the history."""
        started = time.monotonic()
        view = self._read()
        moved = view.pop("_committed")
        seconds = started - self._sampled_at if self.history else 0.0
        sample: dict[str, Any] = {"at": utcnow().isoformat(), "stages": {}}
        for name, stage in [*view["stages"].items(), ("projector", view["projector"])]:
            group = stage.pop("_group")
            done = self._processed(group, moved.get(group, {})) if seconds else None
            per_s = round(done / seconds, 2) if done is not None and seconds > 0 else None
            sample["stages"][name] = {"lag": stage["lag"], "per_s": per_s}
        self._committed = moved
        self._sampled_at = started
        self.history.append(sample)
        return view

    def _processed(self, group: str, now: dict[Place, int]) -> int | None:
        """Messages the group committed past since the last sample."""
        before = self._committed.get(group)
        if before is None:
            return None
        ranges = {place: (before.get(place, end), end) for place, end in now.items()}
        return sum(self._count(ranges)[0].values())

    def _read(self) -> dict[str, Any]:
        stages: dict[str, Any] = {}
        committed: dict[str, dict[Place, int]] = {}
        groups = [f"anchorline-{service}" for service in STAGE_SERVICES.values()]
        live = self.members.describe([*groups, "anchorline-projector"])
        for stage, service in STAGE_SERVICES.items():
            source, group = self.topics.request_topic(stage), f"anchorline-{service}"
            waiting, committed[group] = self._lag(group, list(self.topics.lanes(stage)))
            retrying, _ = self._lag(f"{group}-delay", self.topics.retries(source))
            stages[str(stage)] = {
                "topic": source,
                **waiting,
                "waiting_to_retry": retrying["lag"],
                "dead_letters": self._depth(self.topics.dead_letter(source)),
                "instances": live.get(group, {}),
                "_group": group,
            }
        status = self.topics.job_status
        waiting, committed["anchorline-projector"] = self._lag("anchorline-projector", [status])
        projector = {
            "topic": status,
            **waiting,
            "dead_letters": self._depth(self.topics.dead_letter(status)),
            "instances": live.get("anchorline-projector", {}),
            "_group": "anchorline-projector",
        }
        return {"stages": stages, "projector": projector, "_committed": committed}

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

    def _lag(self, group: str, topics: list[str]) -> tuple[dict[str, Any], dict[Place, int]]:
        """Messages in `topics` that `group` has not committed past, in all and by partition
        (`exact`: false when a backlog was too long to read: counted in offsets past the
        first MAX_COUNTED of each partition: a few too many), and the group's committed offsets."""
        consumer = self._consumer(group)
        try:
            partitions = [p for topic in topics for p in self._partitions(consumer, topic)]
            ranges: dict[Place, tuple[int, int]] = {}
            for committed in _committed(consumer, partitions) if partitions else []:
                low, high = watermarks(consumer, committed, COORDINATOR_WAIT_S)
                start = committed.offset if committed.offset >= 0 else low
                ranges[(committed.topic, committed.partition)] = (max(start, low), high)
        finally:
            consumer.close()
        counted, exact = self._count(ranges)
        by_partition = {f"{t}:{p}": n for (t, p), n in sorted(counted.items()) if n}
        lag = {"lag": sum(counted.values()), "exact": exact, "partitions": by_partition}
        return lag, {place: start for place, (start, _) in ranges.items()}

    def _depth(self, topic: str) -> int:
        """Messages a topic holds (what retention has kept)."""
        consumer = self._consumer("anchorline-gateway-view")
        try:
            ranges = {}
            for partition in self._partitions(consumer, topic):
                low, high = watermarks(consumer, partition, COORDINATOR_WAIT_S)
                ranges[(topic, partition.partition)] = (low, high)
        finally:
            consumer.close()
        return sum(self._count(ranges)[0].values())

    def _count(self, ranges: dict[Place, tuple[int, int]]) -> tuple[dict[Place, int], bool]:
        if not any(end > start for start, end in ranges.values()):
            return {place: 0 for place in ranges}, True
        consumer = counts.reader(self.reader_settings)
        try:
            return counts.count(consumer, ranges)
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
