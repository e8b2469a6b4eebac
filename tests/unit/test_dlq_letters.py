from __future__ import annotations

from datetime import UTC, datetime

from anchorline.events import JobKind, JobStatus, NotifyRequested, Stage, StageState
from anchorline.stream import codec
from anchorline.stream.dlq import DeadLetter, LetterFilter, replay_messages
from anchorline.stream.topics import Topics
from anchorline_projector.apply import JobRow, apply


def letter(key: bytes | None, headers: dict[str, bytes]) -> DeadLetter:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    return DeadLetter("verify", "t.jobs.requested.dlq", 0, 7, key, b"junk", headers, when)


def test_a_key_that_is_not_utf8_is_filtered_and_shown_without_an_error() -> None:
    found = letter(b"\xff\xfe job", {})
    assert not LetterFilter(job_id="job").matches(found)
    assert found.summary()["key"] == "\ufffd\ufffd job"


def test_forged_headers_are_shown_without_an_error() -> None:
    found = letter(
        b"k", {"retry_topic-attempts": b"9" * 30, "kafka_dlt-exception-message": b"\xff"}
    )
    assert found.attempts == 0
    assert found.error == "\ufffd"


def test_a_replayed_webhook_is_sent_again_and_noted_without_moving_its_job() -> None:
    when = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    ended = NotifyRequested("job-1", JobKind.VERIFY, Stage.VERIFY, StageState.FAILED, when, "{}")
    dead = DeadLetter(
        "notify", "t.notify.requested.dlq", 0, 3, b"job-1", codec.encode(ended), {}, when
    )
    topics = Topics("t")
    (again, queued, logged) = replay_messages(dead, topics, now=when)
    assert (again[0], again[2]) == ("t.notify.requested", codec.encode(ended))
    status = codec.decode(queued[2], JobStatus)
    assert (status.stage, status.state, status.generation) == (Stage.NOTIFY, StageState.QUEUED, 1)
    assert logged[0] == topics.replay_log
    row = JobRow("job-1", "verify", "failed", "verify", when, when, rank_state=4)
    assert apply(row, status) is None  # in the history only: the job stays failed


def test_a_replay_continues_the_letters_trace_and_drops_a_malformed_one() -> None:
    traced = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    when = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    (again, *_) = replay_messages(
        letter(b"k", {"traceparent": traced.encode()}), Topics("t"), now=when
    )
    assert ("traceparent", traced.encode()) in again[3]
    (again, *_) = replay_messages(letter(b"k", {"traceparent": b"00-bad"}), Topics("t"), now=when)
    assert "traceparent" not in dict(again[3])
