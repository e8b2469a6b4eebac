from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from anchorline.events import (
    AnchorRequested,
    JobKind,
    JobRequested,
    JobStatus,
    Priority,
    ProveRequested,
    Stage,
    StageState,
)
from anchorline.stream.topics import Topics, key_of

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
REQUEST = JobRequested("job-1", JobKind.VERIFY, "sha256:x", "{}", "0x", AT)
PROVE = ProveRequested("job-2", JobKind.PROOF, "0xc", "0xm", "0xs", AT)
ANCHOR = AnchorRequested("batch-1", "0x" + "ab" * 32, ["job-3"], AT)
STATUS = JobStatus("job-4", JobKind.VERIFY, Stage.VERIFY, StageState.QUEUED)


def test_names_derive_from_the_prefix() -> None:
    topics = Topics("p")
    assert [topics.request_topic(stage) for stage in Stage] == [
        "p.jobs.requested",
        "p.prove.requested",
        "p.anchor.requested",
        "p.notify.requested",
    ]
    assert topics.job_status == "p.job.status"
    assert topics.dead_letter("p.job.status") == "p.job.status.dlq"


def test_default_prefix_is_anchorline() -> None:
    assert Topics().jobs_requested == "anchorline.jobs.requested"


def test_all_lists_every_input_its_delay_topics_and_dead_letter_topic_once() -> None:
    names = Topics("p", retry_levels=2).all()
    assert len(names) == len(set(names)) == 5 + 4 * 2 + 5 + 6 + 3
    assert names[-3:] == ["p.deliveries", "p.dlq.replays", "p.jobs.cancelled"]
    lanes = [n for n in names if n.endswith((".high", ".low"))]
    assert lanes == [f"p.{stage}.requested.{p}" for stage in PIPE for p in ("high", "low")]
    inputs = [
        n for n in names[:-3] if not n.endswith((".dlq", ".high", ".low")) and ".retry." not in n
    ]
    letters = sorted(name for name in names if name.endswith(".dlq"))
    assert sorted(f"{name}.dlq" for name in inputs) == letters
    assert "p.job.status.retry.1" not in names, "the projector retries in place, not via topics"
    assert [n for n in names if n.startswith("p.prove.requested.retry.")] == [
        "p.prove.requested.retry.1",
        "p.prove.requested.retry.2",
    ]


@pytest.mark.parametrize(
    ("event", "topic", "key"),
    [
        (REQUEST, "p.jobs.requested", "job-1"),
        (PROVE, "p.prove.requested", "job-2"),
        (ANCHOR, "p.anchor.requested", "0x" + "ab" * 32),
        (STATUS, "p.job.status", "job-4"),
    ],
)
def test_each_event_has_its_topic_and_key(event: object, topic: str, key: str) -> None:
    assert Topics("p").for_event(event) == topic  # type: ignore[arg-type]
    assert key_of(event) == key  # type: ignore[arg-type]


PIPE = ("jobs", "prove", "anchor")


@pytest.mark.parametrize("priority", list(Priority))
def test_each_request_goes_to_the_topic_of_its_priority(priority: Priority) -> None:
    topics = Topics("p")
    lane = "" if priority is Priority.NORMAL else f".{priority}"
    assert topics.for_event(replace(REQUEST, priority=priority)) == f"p.jobs.requested{lane}"
    assert topics.for_event(replace(PROVE, priority=priority)) == f"p.prove.requested{lane}"
    assert topics.for_event(replace(ANCHOR, priority=priority)) == f"p.anchor.requested{lane}"
    assert topics.lanes(Stage.VERIFY)[f"p.jobs.requested{lane}"] is priority


def test_the_notifier_has_one_topic_whatever_the_priority() -> None:
    assert Topics("p").lanes(Stage.NOTIFY) == {"p.notify.requested": Priority.NORMAL}


def test_an_unknown_event_has_no_topic() -> None:
    with pytest.raises(TypeError, match="no topic for str"):
        Topics("p").for_event("not an event")  # type: ignore[arg-type]
