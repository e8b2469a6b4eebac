from __future__ import annotations

from datetime import UTC, datetime

from anchorline.stream.dlq import DeadLetter, LetterFilter


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
