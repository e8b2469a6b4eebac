"""`running` is published only for jobs in hand long enough, or reporting progress."""

from __future__ import annotations

from typing import Any

import pytest

from anchorline.events import JobKind, JobRef, JobStatus, Stage, StageState
from anchorline.stream.runner import BATCHED_RUNNING_AFTER_S, running_after_s
from anchorline.stream.running import RunningStatuses


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def started(job_id: str, *, progress: int = 0) -> JobStatus:
    ref = JobRef(job_id, JobKind.VERIFY)
    return ref.status(Stage.VERIFY, StageState.RUNNING, attempt=1, progress=progress)


def statuses(after_s: float = 0.1) -> tuple[RunningStatuses, list[JobStatus], Clock]:
    published: list[JobStatus] = []
    clock = Clock()
    return RunningStatuses(published.append, after_s=after_s, clock=clock), published, clock


def test_a_job_done_sooner_publishes_no_running() -> None:
    running, published, clock = statuses()
    running.report(started("a"))
    clock.now += 0.05
    running.publish_due()
    running.settle()
    clock.now += 1
    running.publish_due()
    assert published == []


def test_a_job_still_in_hand_after_the_delay_shows_running() -> None:
    running, published, clock = statuses()
    running.report(started("a"))
    clock.now += 0.05
    running.report(started("b"))
    clock.now += 0.06
    running.publish_due()
    assert [s.job_id for s in published] == ["a"]
    clock.now += 0.05
    running.publish_due()
    assert [s.job_id for s in published] == ["a", "b"]


def test_progress_before_the_delay_waits_and_only_the_latest_goes_out() -> None:
    running, published, clock = statuses()
    running.report(started("a"))
    clock.now += 0.03
    running.report(started("a", progress=30))
    running.report(started("a", progress=60))
    assert published == []
    clock.now += 0.08
    running.publish_due()
    running.publish_due()
    assert [(s.job_id, s.progress) for s in published] == [("a", 60)]


def test_progress_after_the_job_showed_running_goes_out_at_once() -> None:
    running, published, clock = statuses()
    running.report(started("a"))
    clock.now += 0.11
    running.publish_due()
    running.report(started("a", progress=40))
    running.report(started("a", progress=50))
    assert [(s.job_id, s.progress) for s in published] == [("a", 0), ("a", 40), ("a", 50)]


def test_a_quick_job_s_progress_never_goes_out() -> None:
    """Four chunks of a 4 MiB content in 5 ms: four statuses a job before, each one more record
    for Kafka and the projector."""
    running, published, clock = statuses()
    running.report(started("a"))
    for percent in (25, 50, 75):
        clock.now += 0.001
        running.report(started("a", progress=percent))
    running.finished(["a"])
    clock.now += 1
    running.publish_due()
    assert published == []


def test_progress_of_a_job_never_announced_goes_out_at_once() -> None:
    running, published, _ = statuses()
    running.report(started("a", progress=30))
    assert [(s.job_id, s.progress) for s in published] == [("a", 30)]


def test_at_zero_every_running_status_is_published_at_once() -> None:
    running, published, _ = statuses(after_s=0)
    running.report(started("a"))
    assert [s.job_id for s in published] == ["a"]


def test_a_batched_stage_holds_running_for_at_least_its_own_floor() -> None:
    """A batch's jobs are all in hand while it runs: a few hundred milliseconds of proofs is not
    worth a `running` status each; a batch slower than the floor (a slow chain) shows them."""
    assert running_after_s(0.1, batched=False) == 0.1
    assert running_after_s(0.1, batched=True) == BATCHED_RUNNING_AFTER_S
    assert running_after_s(5.0, batched=True) == 5.0
    assert running_after_s(0.0, batched=True) == 0.0  # 0: every job's, as documented


def test_the_stages_of_batches_are_the_batched_ones_and_the_anchor_stage() -> None:
    """The prover is batched; the chain-writer takes one root at a time, each a batch's jobs."""
    from anchorline.stream.runner import holds_batches
    from anchorline_chain_writer.handler import AnchorHandler
    from anchorline_prover.handler import ProveHandler
    from anchorline_verifier.handler import VerifyHandler

    assert holds_batches(ProveHandler) and holds_batches(AnchorHandler)
    assert not holds_batches(VerifyHandler)


def test_a_finished_job_publishes_no_running_while_its_batch_goes_on() -> None:
    running, published, clock = statuses()
    running.report(started("a"))
    clock.now += 0.02
    running.finished(["a"])
    running.report(started("b"))
    clock.now += 0.09
    running.publish_due()
    assert published == [], "a ended 90 ms ago, b is in hand for 90 ms"
    clock.now += 0.02
    running.publish_due()
    assert [s.job_id for s in published] == ["b"]


class _Clocked:
    """A verify stage whose jobs take `step` seconds each on the test's clock."""

    stage = Stage.VERIFY
    batched = False

    def __init__(self, clock: Clock, step: float) -> None:
        from anchorline.events import JobRequested

        self.consumes = JobRequested
        self.clock, self.step = clock, step

    def handle(self, events: list[Any], report: Any) -> list[Any]:
        from anchorline.events import refs_of

        self.clock.now += self.step
        return [refs_of(e)[0].status(Stage.VERIFY, StageState.SUCCEEDED) for e in events]


@pytest.mark.parametrize("limit_s", [0.0, 30.0], ids=["one call a job", "time-limited"])
def test_quick_jobs_of_a_long_batch_publish_no_running(limit_s: float) -> None:
    """Five jobs of 60 ms: the batch takes 300 ms, no job is in hand for 100 ms."""
    from datetime import UTC, datetime

    from anchorline.events import JobRequested
    from anchorline.stream import codec
    from anchorline.stream.runner import Incoming, MessageProcessor, RetryPolicy
    from anchorline.stream.topics import Topics

    running, published, clock = statuses()
    topics = Topics("t")
    processor = MessageProcessor(
        _Clocked(clock, 0.06),  # type: ignore[arg-type]
        topics=topics,
        retry=RetryPolicy(max_attempts=3, ladder=(5.0,)),
        publish_now=running.report,
        finished=running.finished,
        time_limit_s=limit_s,
        batch_budget_s=60.0,
    )
    batch = [
        Incoming(
            topics.jobs_requested,
            0,
            offset,
            job_id.encode(),
            codec.encode(
                JobRequested(
                    job_id=job_id,
                    kind=JobKind.VERIFY,
                    content_uri="sha256:" + "00" * 32,
                    manifest="{}",
                    signature="0x",
                    submitted_at=datetime(2024, 5, 1, tzinfo=UTC),
                )
            ),
        )
        for offset, job_id in enumerate("abcde")
    ]
    try:
        out = processor.process(batch)
        running.publish_due()  # the ticker, at the batch's end: 300 ms after the first began
    finally:
        processor.limiter.close()
    assert len([item for item in out if item.topic == topics.job_status]) == 5
    assert published == []
