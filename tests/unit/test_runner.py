from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from anchorline.errors import Permanent, Poison, Retryable
from anchorline.events import (
    Event,
    JobKind,
    JobRequested,
    JobStatus,
    ProveRequested,
    Stage,
    StageState,
    refs_of,
)
from anchorline.stream import codec
from anchorline.stream.cancellations import CancelledJobs
from anchorline.stream.runner import (
    Incoming,
    MessageProcessor,
    Outgoing,
    RetryPolicy,
    dead_letter_headers,
    record_size,
)
from anchorline.stream.stage import Report
from anchorline.stream.topics import Topics
from anchorline.stream.tracing import TraceContext, parse

TOPICS = Topics("t")
SOURCE = TOPICS.jobs_requested
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SUBMITTED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def requested(job_id: str) -> JobRequested:
    return JobRequested(
        job_id=job_id,
        kind=JobKind.PROOF,
        content_uri="sha256:" + "00" * 32,
        manifest="{}",
        signature="0x",
        submitted_at=SUBMITTED,
    )


def message(value: bytes | None, *, offset: int = 7, key: bytes | None = b"k") -> Incoming:
    return Incoming(SOURCE, 2, offset, key, value, timestamp_ms=1714564800000)


def message_of(job_id: str, offset: int = 7) -> Incoming:
    return message(codec.encode(requested(job_id)), offset=offset, key=job_id.encode())


class FakeHandler:
    """A verify stage that raises the queued errors, one per call, then succeeds."""

    stage = Stage.VERIFY
    consumes = JobRequested

    def __init__(self, *errors: Exception, batched: bool = False, progress: int | None = None):
        self.errors = list(errors)
        self.batched = batched
        self.progress = progress
        self.calls: list[list[str]] = []

    def handle(self, events: Sequence[JobRequested], report: Report) -> list[Event]:
        self.calls.append([event.job_id for event in events])
        if self.progress is not None:
            for event in events:
                report(refs_of(event)[0], self.progress)
        if self.errors:
            raise self.errors.pop(0)
        out: list[Event] = []
        for event in events:
            ref = refs_of(event)[0]
            out.append(ref.status(self.stage, StageState.SUCCEEDED, progress=100))
            out.append(
                ProveRequested(event.job_id, event.kind, "0x", "0x", "0xsigner", event.submitted_at)
            )
        return out


NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


class Harness:
    def __init__(self, handler: FakeHandler, *, max_attempts: int = 3) -> None:
        self.published: list[JobStatus] = []
        self.cancelled = CancelledJobs()
        self.processor = MessageProcessor(
            handler,
            topics=TOPICS,
            retry=RetryPolicy(max_attempts=max_attempts, ladder=(5.0, 30.0)),
            publish_now=self.published.append,
            clock=lambda: NOW,
            cancelled=self.cancelled.is_cancelled,
        )

    def process(self, *batch: Incoming) -> list[Outgoing]:
        return self.processor.process(list(batch))


def decoded(out: list[Outgoing], topic: str) -> list[Any]:
    return [codec.decode_any(item.value) for item in out if item.topic == topic]


def headers_of(item: Outgoing) -> dict[str, str]:
    return {
        name: value.decode() if isinstance(value, bytes) else str(value)
        for name, value in item.headers
    }


def test_success_produces_the_handlers_events_on_their_topics() -> None:
    handler = FakeHandler()
    harness = Harness(handler)
    out = harness.process(message_of("a"))
    assert [item.topic for item in out] == [TOPICS.job_status, TOPICS.prove_requested]
    assert [item.key for item in out] == [b"a", b"a"]
    (status,) = decoded(out, TOPICS.job_status)
    assert (status.job_id, status.state) == ("a", StageState.SUCCEEDED)
    assert [(s.state, s.attempt, s.progress) for s in harness.published] == [
        (StageState.RUNNING, 1, 0)
    ]


@pytest.mark.parametrize(
    "value",
    [None, b"", b"garbage", codec.encode(requested("a"))[:-3]],
    ids=["none", "empty", "garbage", "truncated"],
)
def test_poison_goes_to_the_dead_letter_topic_untouched(value: bytes | None) -> None:
    handler = FakeHandler()
    harness = Harness(handler)
    out = harness.process(message(value))
    (dead,) = out
    assert dead.topic == f"{SOURCE}.dlq"
    assert dead.key == b"k"
    assert dead.value == (value or b"")
    headers = headers_of(dead)
    assert headers["kafka_dlt-original-topic"] == SOURCE
    assert headers["kafka_dlt-original-partition"] == "2"
    assert headers["kafka_dlt-original-offset"] == "7"
    assert headers["kafka_dlt-original-timestamp"] == "1714564800000"
    assert headers["kafka_dlt-exception-fqcn"] == "anchorline.errors.SerializationError"
    assert headers["kafka_dlt-exception-message"]
    assert headers["retry_topic-attempts"] == "1"
    assert handler.calls == []
    assert harness.published == []


def test_a_message_of_the_wrong_type_is_poison() -> None:
    status = JobStatus("a", JobKind.PROOF, Stage.VERIFY, StageState.QUEUED)
    out = Harness(FakeHandler()).process(message(codec.encode(status)))
    assert [item.topic for item in out] == [f"{SOURCE}.dlq"]
    assert "expected JobRequested" in headers_of(out[0])["kafka_dlt-exception-message"]


def test_poison_does_not_hold_up_the_rest_of_the_batch() -> None:
    handler = FakeHandler()
    out = Harness(handler).process(message(b"junk", offset=1), message_of("a", offset=2))
    assert handler.calls == [["a"]]
    assert [item.topic for item in out] == [
        f"{SOURCE}.dlq",
        TOPICS.job_status,
        TOPICS.prove_requested,
    ]


def test_permanent_error_fails_the_job_without_retrying() -> None:
    handler = FakeHandler(Permanent("content_uri is not supported"))
    harness = Harness(handler)
    out = harness.process(message_of("a"))
    (failed,) = decoded(out, TOPICS.job_status)
    assert [item.topic for item in out] == [TOPICS.job_status]
    assert (failed.job_id, failed.state, failed.final) == ("a", StageState.FAILED, True)
    assert failed.error == "content_uri is not supported"
    assert failed.error_class == "Permanent"
    assert handler.calls == [["a"]]


def forwarded(item: Outgoing) -> Incoming:
    """What the delay forwarder hands back to the stage: the same bytes and headers."""
    return Incoming(SOURCE, 2, 99, item.key, item.value, 1714564800000, dict(item.headers))  # type: ignore[arg-type]


def test_retryable_goes_to_the_delay_topic_of_its_rung() -> None:
    handler = FakeHandler(Retryable("blob not there yet"), Retryable("still not"))
    harness = Harness(handler, max_attempts=3)
    raw = message_of("a")

    first = harness.process(raw)
    (delay_1,) = [item for item in first if item.topic.startswith(f"{SOURCE}.retry")]
    assert delay_1.topic == f"{SOURCE}.retry.1"
    assert (delay_1.key, delay_1.value) == (raw.key, raw.value)
    sent = headers_of(delay_1)
    assert sent["retry_topic-attempts"] == "2"
    assert sent["retry_topic-backoff-timestamp"] == str(int(NOW.timestamp() * 1000) + 5000)
    assert sent["kafka_dlt-original-offset"] == "7"
    assert sent["kafka_dlt-exception-message"] == "blob not there yet"
    (retrying,) = decoded(first, TOPICS.job_status)
    assert (retrying.state, retrying.attempt, retrying.final) == (StageState.RETRYING, 1, False)
    assert retrying.next_attempt_at == NOW + timedelta(seconds=5)

    second = harness.process(forwarded(delay_1))
    (delay_2,) = [item for item in second if item.topic.startswith(f"{SOURCE}.retry")]
    assert delay_2.topic == f"{SOURCE}.retry.2"
    assert headers_of(delay_2)["retry_topic-attempts"] == "3"
    assert headers_of(delay_2)["kafka_dlt-original-offset"] == "7", "the first origin is kept"
    assert decoded(second, TOPICS.job_status)[0].next_attempt_at == NOW + timedelta(seconds=30)

    third = harness.process(forwarded(delay_2))
    (done,) = decoded(third, TOPICS.job_status)
    assert (done.state, done.attempt) == (StageState.SUCCEEDED, 3), "ranks above its running"
    assert [(s.state, s.attempt) for s in harness.published] == [
        (StageState.RUNNING, 1),
        (StageState.RUNNING, 2),
        (StageState.RUNNING, 3),
    ]
    assert handler.calls == [["a"], ["a"], ["a"]]


def test_exhausted_retries_dead_letter_the_message_and_kill_the_job() -> None:
    handler = FakeHandler(Retryable("still down"))
    harness = Harness(handler, max_attempts=3)
    raw = message_of("a")
    last_try = Incoming(
        SOURCE,
        2,
        50,
        raw.key,
        raw.value,
        0,
        {
            "retry_topic-attempts": b"3",
            "kafka_dlt-original-offset": b"7",
            "kafka_dlt-original-topic": SOURCE.encode(),
        },
    )
    out = harness.process(last_try)
    dead_letters = [item for item in out if item.topic == f"{SOURCE}.dlq"]
    assert [item.value for item in dead_letters] == [raw.value]
    assert not [item for item in out if ".retry." in item.topic]
    headers = headers_of(dead_letters[0])
    assert headers["retry_topic-attempts"] == "3"
    assert headers["kafka_dlt-original-offset"] == "7"
    assert headers["kafka_dlt-exception-message"] == "still down"
    assert headers["kafka_dlt-exception-fqcn"] == "anchorline.errors.Retryable"
    (dead,) = decoded(out, TOPICS.job_status)
    assert (dead.state, dead.final, dead.attempt, dead.error) == (
        StageState.DEAD,
        True,
        3,
        "still down",
    )


def test_an_unexpected_exception_is_retried_like_a_retryable_one() -> None:
    handler = FakeHandler(KeyError("bug"))
    out = Harness(handler, max_attempts=2).process(message_of("a"))
    assert [item.topic for item in out] == [f"{SOURCE}.retry.1", TOPICS.job_status]
    assert decoded(out, TOPICS.job_status)[0].error_class == "KeyError"


def test_replay_generation_travels_with_the_job() -> None:
    raw = message_of("a")
    replayed = Incoming(SOURCE, 2, 8, raw.key, raw.value, 0, {"anchorline-generations": b'{"a":2}'})
    harness = Harness(FakeHandler())
    out = harness.process(replayed)
    assert [s.generation for s in harness.published] == [2]
    assert [s.generation for s in decoded(out, TOPICS.job_status)] == [2]
    (prove,) = [item for item in out if item.topic == TOPICS.prove_requested]
    assert headers_of(prove)["anchorline-generations"] == '{"a":2}'


def test_poison_raised_by_the_handler_dead_letters_at_once() -> None:
    handler = FakeHandler(Poison("breaks the contract"))
    harness = Harness(handler)
    out = harness.process(message_of("a"))
    assert handler.calls == [["a"]]
    assert [item.topic for item in out] == [f"{SOURCE}.dlq", TOPICS.job_status]
    assert headers_of(out[0])["retry_topic-attempts"] == "1"
    assert decoded(out, TOPICS.job_status)[0].state is StageState.DEAD


def test_a_batched_handler_gets_every_message_at_once() -> None:
    handler = FakeHandler(batched=True)
    harness = Harness(handler)
    out = harness.process(*(message_of(job, offset) for offset, job in enumerate("abc")))
    assert handler.calls == [["a", "b", "c"]]
    assert [s.job_id for s in decoded(out, TOPICS.job_status)] == ["a", "b", "c"]
    assert [s.job_id for s in harness.published] == ["a", "b", "c"]


def test_an_unbatched_handler_gets_one_message_at_a_time() -> None:
    handler = FakeHandler()
    Harness(handler).process(*(message_of(job, offset) for offset, job in enumerate("abc")))
    assert handler.calls == [["a"], ["b"], ["c"]]


class PickyHandler(FakeHandler):
    """A batched stage that raises `error` for any batch holding the job `bad`, and whose
    output for the job `huge` is too large for a record."""

    def __init__(self, error: Exception, *, bad: str = "bad") -> None:
        super().__init__(batched=True)
        self.error = error
        self.bad = bad

    def handle(self, events: Sequence[JobRequested], report: Report) -> list[Event]:
        self.calls.append([event.job_id for event in events])
        if any(event.job_id == self.bad for event in events):
            raise self.error
        return [
            refs_of(event)[0].status(
                self.stage,
                StageState.SUCCEEDED,
                result='"' + "x" * 2_000_000 * (event.job_id == "huge") + '"',
            )
            for event in events
        ]


@pytest.mark.parametrize(
    "error",
    [
        Permanent("signer is not an address"),
        Poison("breaks the contract"),
        Retryable("node away"),
        RecursionError("too deep"),
        OverflowError("too big"),
        AssertionError("cannot be"),
        ValueError("not-an-address"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_failing_batch_runs_again_one_record_at_a_time(error: Exception) -> None:
    handler = PickyHandler(error)
    batch = [message_of(job, offset) for offset, job in enumerate(["a", "bad", "c"])]
    out = Harness(handler).process(*batch)
    assert handler.calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    states = {s.job_id: s for s in decoded(out, TOPICS.job_status)}
    assert states["a"].state is StageState.SUCCEEDED
    assert states["c"].state is StageState.SUCCEEDED
    assert states["a"].error is None and states["c"].error is None
    expected = {
        Permanent: StageState.FAILED,
        Poison: StageState.DEAD,
    }.get(type(error), StageState.RETRYING)
    assert states["bad"].state is expected
    assert states["bad"].error == str(error)
    assert states["bad"].error_class == type(error).__name__


def test_an_output_too_large_for_a_record_fails_its_job_alone_with_the_reason() -> None:
    handler = PickyHandler(Permanent("unused"))
    batch = [message_of(job, offset) for offset, job in enumerate(["a", "huge", "c"])]
    out = Harness(handler).process(*batch)
    states = {s.job_id: s for s in decoded(out, TOPICS.job_status)}
    assert [states[job].state for job in "ac"] == [StageState.SUCCEEDED] * 2
    failed = states["huge"]
    assert failed.state is StageState.FAILED and failed.result is None
    assert failed.error_class == "OutputTooLarge"
    assert "over the record limit of 960000" in (failed.error or "")
    assert max(record_size(item) for item in out) < 960_000


def test_a_dead_letter_too_large_to_copy_keeps_its_headers_and_drops_its_value() -> None:
    huge = message(b"\xc3\x01" + b"x" * 1_000_000)
    (letter,) = Harness(FakeHandler()).process(huge)
    assert letter.topic == f"{SOURCE}.dlq" and letter.value == b""
    assert headers_of(letter)["anchorline-value-dropped"] == "1000002"
    assert "unknown schema fingerprint" in headers_of(letter)["kafka_dlt-exception-message"]


def test_reported_progress_is_published_at_once() -> None:
    harness = Harness(FakeHandler(progress=40))
    harness.process(message_of("a"))
    assert [(s.state, s.progress) for s in harness.published] == [
        (StageState.RUNNING, 0),
        (StageState.RUNNING, 40),
    ]


def test_attempts_past_the_ladder_wait_on_its_last_rung() -> None:
    policy = RetryPolicy(max_attempts=6, ladder=(5.0, 30.0, 300.0))
    assert [policy.delay(attempt) for attempt in range(1, 6)] == [5.0, 30.0, 300.0, 300.0, 300.0]
    assert [policy.level(attempt) for attempt in range(1, 6)] == [1, 2, 3, 3, 3]


def test_dead_letter_headers_name_where_the_message_came_from() -> None:
    headers = dict(dead_letter_headers(message(b"x", offset=42), ValueError("nope"), attempts=2))
    assert headers == {
        "kafka_dlt-exception-fqcn": b"builtins.ValueError",
        "kafka_dlt-exception-message": b"nope",
        "kafka_dlt-original-topic": SOURCE.encode(),
        "kafka_dlt-original-partition": b"2",
        "kafka_dlt-original-offset": b"42",
        "kafka_dlt-original-timestamp": b"1714564800000",
        "retry_topic-attempts": b"2",
    }


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("retry_topic-attempts", b"9" * 30, "not a decimal integer of at most 19 digits"),
        ("retry_topic-attempts", b"-1", "must be from 1 to 10000, not -1"),
        ("retry_topic-attempts", b"99999", "must be from 1 to 10000, not 99999"),
        ("retry_topic-attempts", b"two", "not a decimal integer"),
        ("anchorline-generations", b'{"a": 1000000000000000000000000000000}', "from 0 to"),
        ("anchorline-generations", b'{"a": -1}', "from 0 to 1000000"),
        ("anchorline-generations", b'{"a": 1.5}', "from 0 to 1000000"),
        ("anchorline-generations", b'{"a": [[1]]}', "nests deeper than 1 levels"),
        ("anchorline-generations", b"[1]", "must be a JSON object"),
        ("anchorline-generations", b"{", "is not JSON"),
    ],
)
def test_a_hostile_header_dead_letters_its_record_with_the_reason(
    name: str, value: bytes, reason: str
) -> None:
    raw = message_of("a")
    forged = Incoming(SOURCE, 2, 8, raw.key, raw.value, 0, {name: value})
    handler = FakeHandler()
    out = Harness(handler).process(forged, message_of("b", offset=9))
    assert handler.calls == [["b"]]
    letter = out[0]
    assert letter.topic == f"{SOURCE}.dlq"
    assert reason in headers_of(letter)["kafka_dlt-exception-message"]
    assert headers_of(letter)["kafka_dlt-exception-fqcn"].endswith("BadHeader")
    dead = decoded(out, TOPICS.job_status)[0]
    assert (dead.job_id, dead.state) == ("a", StageState.DEAD)
    assert reason in (dead.error or "")


def test_an_exception_message_is_cut_before_it_travels() -> None:
    handler = FakeHandler(Permanent("x" * 1_000_000))
    out = Harness(handler).process(message_of("a"))
    (failed,) = decoded(out, TOPICS.job_status)
    assert failed.error is not None and len(failed.error) == 4096


@pytest.mark.parametrize(
    ("job_id", "tenant", "reason"),
    [
        ("j" * 65, None, "is not 1 to 64 characters"),
        ("a/b", None, "is not 1 to 64 characters"),
        ("", None, "is not 1 to 64 characters"),
        ("ok", "t" * 65, "tenant of job ok is not 1 to 64 characters"),
        ("ok", "../other", "tenant of job ok is not 1 to 64 characters"),
    ],
)
def test_a_job_id_or_tenant_outside_the_contract_is_dead_lettered(
    job_id: str, tenant: str | None, reason: str
) -> None:
    event = replace(requested("x"), job_id=job_id, tenant=tenant)
    handler = FakeHandler()
    harness = Harness(handler)
    (letter,) = harness.process(message(codec.encode(event)))
    assert letter.topic == f"{SOURCE}.dlq"
    assert reason in headers_of(letter)["kafka_dlt-exception-message"]
    assert handler.calls == [] and harness.published == []


def test_a_dead_letter_whose_copied_headers_are_too_large_drops_them_too() -> None:
    huge = {"kafka_dlt-original-topic": b"t" * 999_000, "kafka_dlt-original-offset": b"1"}
    forged = Incoming(SOURCE, 2, 8, b"k" * 50_000, b"garbage", 0, huge)
    (letter,) = Harness(FakeHandler()).process(forged)
    assert record_size(letter) < 960_000
    assert letter.key == b"k" * 4096
    assert headers_of(letter)["kafka_dlt-original-offset"] == "1"
    assert "too short" in headers_of(letter)["kafka_dlt-exception-message"]


class PrefetchingHandler(FakeHandler):
    def __init__(self) -> None:
        super().__init__()
        self.prefetched: list[list[str]] = []

    def prefetch(self, events: Sequence[JobRequested]) -> None:
        self.prefetched.append([event.job_id for event in events])


def test_a_prefetching_handler_gets_the_batch_it_will_handle_once_decoded() -> None:
    handler = PrefetchingHandler()
    Harness(handler).process(message_of("a", 1), message(b"junk", offset=2), message_of("b", 3))
    assert handler.prefetched == [["a", "b"]]  # the undecodable record is dead-lettered instead
    assert handler.calls == [["a"], ["b"]]


# --- cancelled jobs -------------------------------------------------------------------------------


def test_a_cancelled_job_is_skipped_and_ends_cancelled() -> None:
    handler = FakeHandler(batched=True)
    harness = Harness(handler)
    harness.cancelled.add("b", 0)
    out = harness.process(*(message_of(job, offset) for offset, job in enumerate("abc")))
    assert handler.calls == [["a", "c"]]
    statuses = decoded(out, TOPICS.job_status)
    (skipped,) = [s for s in statuses if s.job_id == "b"]
    assert (skipped.state, skipped.final, skipped.stage) == (
        StageState.CANCELLED,
        True,
        Stage.VERIFY,
    )
    assert skipped.note == "skipped by the verify stage: the job was cancelled"
    assert not [item for item in out if item.topic == TOPICS.prove_requested and item.key == b"b"]
    assert "b" not in {s.job_id for s in harness.published}


def test_a_later_run_of_a_cancelled_job_is_not_skipped() -> None:
    raw = message_of("a")
    retried = Incoming(SOURCE, 2, 8, raw.key, raw.value, 0, {"anchorline-generations": b'{"a":1}'})
    handler = FakeHandler()
    harness = Harness(handler)
    harness.cancelled.add("a", 0)
    out = harness.process(retried)
    assert handler.calls == [["a"]]
    assert [s.state for s in decoded(out, TOPICS.job_status)] == [StageState.SUCCEEDED]


# --- time limits ----------------------------------------------------------------------------------


class Sleeper(FakeHandler):
    """Handles like FakeHandler, taking `seconds[job_id]` for a job."""

    def __init__(self, seconds: dict[str, float], *, batched: bool = False) -> None:
        super().__init__(batched=batched)
        self.seconds = seconds

    def handle(self, events: Sequence[JobRequested], report: Report) -> list[Event]:
        import time

        time.sleep(max(self.seconds.get(event.job_id, 0.0) for event in events))
        return super().handle(events, report)


def limited(handler: FakeHandler, *, limit_s: float, budget_s: float = 60.0) -> MessageProcessor:
    return MessageProcessor(
        handler,
        topics=TOPICS,
        retry=RetryPolicy(max_attempts=3, ladder=(5.0, 30.0)),
        publish_now=lambda status: None,
        clock=lambda: NOW,
        time_limit_s=limit_s,
        batch_budget_s=budget_s,
    )


def test_a_record_past_the_stage_time_limit_retries_alone() -> None:
    processor = limited(Sleeper({"b": 2.0}, batched=True), limit_s=0.3)
    out = processor.process([message_of(job, offset) for offset, job in enumerate("abc")])
    retried = [item for item in out if item.topic == f"{SOURCE}.retry.1"]
    assert [item.key for item in retried] == [b"b"]
    assert headers_of(retried[0])["kafka_dlt-exception-fqcn"].endswith("StageTimeout")
    states = {s.job_id: s.state for s in decoded(out, TOPICS.job_status)}
    assert states == {
        "a": StageState.SUCCEEDED,
        "b": StageState.RETRYING,
        "c": StageState.SUCCEEDED,
    }
    processor.limiter.close()


def test_records_the_batch_has_no_time_left_for_go_round_again_unchanged() -> None:
    processor = limited(Sleeper({"a": 0.5}), limit_s=5.0, budget_s=0.3)
    carried = {"retry_topic-attempts": b"2", "traceparent": TRACEPARENT.encode()}
    second = Incoming(SOURCE, 2, 8, b"b", codec.encode(requested("b")), 0, carried)
    out = processor.process([message_of("a"), second])
    (again,) = [item for item in out if item.key == b"b"]
    assert again.topic == SOURCE
    assert again.value == second.value
    assert headers_of(again) == {"retry_topic-attempts": "2", "traceparent": TRACEPARENT}
    # the record that used the budget up is cut off where it ends
    assert [(s.job_id, s.state) for s in decoded(out, TOPICS.job_status)] == [
        ("a", StageState.RETRYING)
    ]
    processor.limiter.close()


def test_without_a_time_limit_the_handler_runs_on_the_runners_thread() -> None:
    threads: list[str] = []

    class Where(FakeHandler):
        def handle(self, events: Sequence[JobRequested], report: Report) -> list[Event]:
            threads.append(threading.current_thread().name)
            return super().handle(events, report)

    for limit_s in (0.0, 5.0):
        processor = limited(Where(), limit_s=limit_s)
        processor.process([message_of("a")])
        processor.limiter.close()
    assert threads == [threading.current_thread().name, "handler"]


# --- trace context -------------------------------------------------------------------------------


def traced_of(job_id: str, traceparent: bytes, *, offset: int = 7) -> Incoming:
    return replace(message_of(job_id, offset), headers={"traceparent": traceparent})


def trace_of(item: Outgoing) -> TraceContext:
    found = parse(headers_of(item).get("traceparent"))
    assert found is not None, f"no valid traceparent on {item}"
    return found


def test_every_output_carries_a_child_span_of_its_records_trace() -> None:
    out = Harness(FakeHandler()).process(traced_of("a", TRACEPARENT.encode()))
    contexts = {trace_of(item) for item in out}
    (context,) = contexts  # the status and the next request: the same stage span
    assert context.trace_id == TRACEPARENT.split("-")[1]
    assert context.span_id != TRACEPARENT.split("-")[2]


@pytest.mark.parametrize(
    "bad", [b"00-zz", b"\xff\xfe", TRACEPARENT.upper().encode(), b"x" * 10_000]
)
def test_a_bad_traceparent_on_a_record_starts_a_new_trace_and_fails_nothing(bad: bytes) -> None:
    out = Harness(FakeHandler()).process(traced_of("a", bad))
    (status,) = decoded(out, TOPICS.job_status)
    assert status.state is StageState.SUCCEEDED
    assert len({trace_of(item).trace_id for item in out}) == 1


def test_jobs_of_one_batch_keep_their_own_traces() -> None:
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    harness = Harness(FakeHandler(batched=True))
    out = harness.process(
        traced_of("a", TRACEPARENT.encode()), traced_of("b", other.encode(), offset=8)
    )
    traces = {item.key: trace_of(item).trace_id for item in out}
    assert traces == {b"a": TRACEPARENT.split("-")[1], b"b": other.split("-")[1]}


def test_retries_and_dead_letters_continue_the_records_trace() -> None:
    harness = Harness(FakeHandler(Retryable("rpc down")))
    out = harness.process(traced_of("a", TRACEPARENT.encode()))
    assert {trace_of(item).trace_id for item in out} == {TRACEPARENT.split("-")[1]}
    poison = replace(message(b"not avro"), headers={"traceparent": TRACEPARENT.encode()})
    (letter,) = harness.process(poison)
    assert trace_of(letter).trace_id == TRACEPARENT.split("-")[1]


class _Clocked(FakeHandler):
    """A verify stage whose jobs take `step` seconds each on the test's clock."""

    def __init__(self, clock: list[float], step: float) -> None:
        super().__init__()
        self.clock, self.step = clock, step

    def handle(self, events: Sequence[JobRequested], report: Report) -> list[Event]:
        self.clock[0] += self.step
        return super().handle(events, report)


@pytest.mark.parametrize("limit_s", [0.0, 30.0], ids=["one call a job", "time-limited"])
def test_quick_jobs_of_a_long_batch_publish_no_running(limit_s: float) -> None:
    """Five jobs of 60 ms: the batch takes 300 ms, no job is in hand for 100 ms (running.py)."""
    from anchorline.stream.running import RunningStatuses

    clock = [100.0]
    published: list[JobStatus] = []
    running = RunningStatuses(published.append, after_s=0.1, clock=lambda: clock[0])
    processor = MessageProcessor(
        _Clocked(clock, 0.06),
        topics=TOPICS,
        retry=RetryPolicy(max_attempts=3, ladder=(5.0,)),
        publish_now=running.report,
        finished=running.finished,
        time_limit_s=limit_s,
        batch_budget_s=60.0,
    )
    try:
        out = processor.process([message_of(job, offset) for offset, job in enumerate("abcde")])
        running.publish_due()  # the ticker, at the batch's end: 300 ms after the first began
    finally:
        processor.limiter.close()
    assert len(decoded(out, TOPICS.job_status)) == 5
    assert published == []
