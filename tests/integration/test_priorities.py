"""Priorities on the real broker: a flood of low jobs does not hold up a high one, and every low
job still ends (`ANCHORLINE_PRIORITY_FLOOD` sets the flood, 3000; `-s` prints the figure)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import pytest
from confluent_kafka import Consumer
from kafka_helpers import publish

from anchorline.events import (
    Event,
    JobKind,
    JobRequested,
    JobStatus,
    Priority,
    Stage,
    StageState,
    refs_of,
    utcnow,
)
from anchorline.settings import Settings
from anchorline.stream import codec
from anchorline.stream.kafka import client_config
from anchorline.stream.runner import StageRunner
from anchorline.stream.stage import Report

FLOOD = int(os.environ.get("ANCHORLINE_PRIORITY_FLOOD", "3000"))
JOB_COST_S = 0.001  # what the stand-in stage spends on each job, so that the flood takes a while
# High must end before this share of the low backlog left at its submission is handled.
BOUND = 0.2


class FixedCostVerify:
    """A verify stage whose every job takes JOB_COST_S and succeeds (the real verifier's work
    is beside the point here: the order in which the runner takes jobs is)."""

    stage = Stage.VERIFY
    consumes = JobRequested
    batched = False

    def handle(self, events: Sequence[JobRequested], report: Report) -> list[Event]:
        time.sleep(JOB_COST_S * len(events))
        return [refs_of(e)[0].status(self.stage, StageState.SUCCEEDED) for e in events]


@dataclass
class Outcomes:
    """When each job's outcome was committed to the status topic, as a reader saw it."""

    ended: dict[str, float]
    lock: threading.Lock

    def count(self, job_ids: set[str], *, by: float = float("inf")) -> int:
        with self.lock:
            return sum(1 for job_id, at in self.ended.items() if job_id in job_ids and at <= by)

    def at(self, job_id: str) -> float | None:
        with self.lock:
            return self.ended.get(job_id)


@pytest.fixture
def outcomes(settings: Settings) -> Iterator[Outcomes]:
    seen = Outcomes({}, threading.Lock())
    stop = threading.Event()
    consumer = Consumer(
        client_config(settings)
        | {
            "group.id": f"watch-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.topics.job_status])

    def watch() -> None:
        while not stop.is_set():
            for message in consumer.consume(500, timeout=0.1):
                if message.error() is None:
                    status = codec.decode(message.value(), JobStatus)
                    if status.state is StageState.SUCCEEDED:
                        with seen.lock:
                            seen.ended.setdefault(status.job_id, time.monotonic())

    thread = threading.Thread(target=watch, name="watch", daemon=True)
    thread.start()
    yield seen
    stop.set()
    thread.join(10)
    consumer.close()


def wait_for(condition: object, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def request(job_id: str, priority: Priority) -> JobRequested:
    return JobRequested(
        job_id, JobKind.VERIFY, "sha256:" + "0" * 64, "{}", "0x", utcnow(), priority=priority
    )


def test_a_high_job_overtakes_a_flood_of_low_ones_and_every_low_one_still_ends(
    settings: Settings, running, outcomes: Outcomes
) -> None:
    settings = replace(settings, running_status_after_s=0.0)
    lows = [request(f"low-{n}", Priority.LOW) for n in range(FLOOD)]
    publish(settings, *lows)  # queued while no stage runs
    low_ids = {job.job_id for job in lows}
    running(StageRunner(FixedCostVerify(), settings, service="verifier").run)
    # The stage is draining the flood: its consumer has fetched low records ahead of any other.
    wait_for(lambda: outcomes.count(low_ids) >= 256, timeout=120, what="the flood to start")

    before = outcomes.count(low_ids)
    submitted = time.monotonic()
    publish(settings, request("high-0", Priority.HIGH))
    wait_for(lambda: outcomes.at("high-0") is not None, timeout=120, what="the high job")
    high_at = outcomes.at("high-0")
    assert high_at is not None
    wait_for(lambda: outcomes.count(low_ids) == FLOOD, timeout=600, what="every low job to end")
    drained_at = max(outcomes.ended[job_id] for job_id in low_ids)

    backlog = FLOOD - before
    overtaken_by = outcomes.count(low_ids, by=high_at) - before
    print(
        f"\nhigh job: ended {high_at - submitted:.2f} s after submission behind {backlog} low "
        f"jobs ({overtaken_by} of them handled meanwhile); the low backlog drained in "
        f"{drained_at - submitted:.2f} s"
    )
    assert overtaken_by < BOUND * backlog, (
        f"{overtaken_by} of {backlog} low jobs were handled before the high one ended"
    )
