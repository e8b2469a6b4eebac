"""`running` is published only for jobs in hand long enough, or reporting progress."""

from __future__ import annotations

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


def test_an_announced_job_is_made_a_status_only_when_it_comes_due() -> None:
    running, published, clock = statuses()
    made: list[str] = []

    def make(job_id: str) -> JobStatus:
        made.append(job_id)
        return started(job_id)

    running.announce("quick", lambda: make("quick"))
    running.announce("slow", lambda: make("slow"))
    running.finished(["quick"])
    clock.now += 0.11
    running.publish_due()
    assert made == ["slow"]
    assert [s.job_id for s in published] == ["slow"]


def test_progress_after_an_announcement_goes_out_when_it_comes_due() -> None:
    running, published, clock = statuses()
    running.announce("a", lambda: started("a"))
    clock.now += 0.05
    running.report(started("a", progress=40))
    running.publish_due()
    assert published == []
    clock.now += 0.06
    running.publish_due()
    assert [(s.job_id, s.progress) for s in published] == [("a", 40)]


def test_with_no_delay_an_announcement_is_published_at_once() -> None:
    running, published, _ = statuses(after_s=0.0)
    running.announce("a", lambda: started("a"))
    assert [s.job_id for s in published] == ["a"]
