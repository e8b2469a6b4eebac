"""Hostile records on the real broker: each fails or dies alone, with its reason, and the
stage carries on with the valid jobs behind it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from confluent_kafka import Producer
from kafka_helpers import publish, read_topic, signed_job

from anchorline.events import JobKind, JobStatus, StageState, new_id
from anchorline.settings import Settings
from anchorline.stream import codec
from anchorline.stream.tracing import parse
from anchorline_verifier.main import build


def statuses(messages: list[Any]) -> list[JobStatus]:
    return [codec.decode(message.value(), JobStatus) for message in messages]


def terminal(messages: list[Any]) -> dict[str, JobStatus]:
    return {
        s.job_id: s
        for s in statuses(messages)
        if s.state in (StageState.FAILED, StageState.SUCCEEDED)
    }


def test_server_files_and_deep_manifests_fail_their_jobs_and_the_rest_go_on(
    settings: Settings, running
) -> None:
    good = signed_job(settings, JobKind.VERIFY, b"valid content")
    hostile = {
        "file:///dev/zero": replace(good, job_id=new_id(), content_uri="file:///dev/zero"),
        "file:///etc/hostname": replace(good, job_id=new_id(), content_uri="file:///etc/hostname"),
        "manifest nests deeper than 32 levels": replace(
            good, job_id=new_id(), manifest="[" * 30_000 + "]" * 30_000
        ),
    }
    publish(settings, *hostile.values(), good)
    running(build(settings).run)

    wanted = {good.job_id, *(job.job_id for job in hostile.values())}
    ended = terminal(
        read_topic(
            settings,
            settings.topics.job_status,
            until=lambda m: wanted <= set(terminal(m)),
            timeout=90,
        )
    )
    assert ended[good.job_id].state is StageState.SUCCEEDED
    for what, job in hostile.items():
        status = ended[job.job_id]
        assert status.state is StageState.FAILED, what
        reason = "manifest nests" if "manifest" in what else "file:// content URIs are not allowed"
        assert reason in (status.error or ""), (what, status.error)


def test_a_forged_attempt_count_is_dead_lettered_with_the_reason(
    settings: Settings, running
) -> None:
    forged = signed_job(settings, JobKind.VERIFY, b"forged")
    good = signed_job(settings, JobKind.VERIFY, b"valid")
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    producer.produce(
        settings.topics.jobs_requested,
        key=forged.job_id.encode(),
        value=codec.encode(forged),
        headers=[("retry_topic-attempts", b"9" * 30)],
    )
    assert producer.flush(30) == 0
    publish(settings, good)
    running(build(settings).run)

    (letter,) = read_topic(
        settings,
        settings.topics.dead_letter(settings.topics.jobs_requested),
        until=lambda m: len(m) >= 1,
    )
    reason = dict(letter.headers())["kafka_dlt-exception-message"]  # type: ignore[attr-defined]
    assert b"retry_topic-attempts is not a decimal integer" in reason
    ended = terminal(
        read_topic(settings, settings.topics.job_status, until=lambda m: good.job_id in terminal(m))
    )
    assert ended[good.job_id].state is StageState.SUCCEEDED


def test_a_bad_traceparent_header_starts_a_new_trace_and_fails_nothing(
    settings: Settings, running
) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    sent = {
        f"00-{trace}-00f067aa0ba902b7-01".encode(): True,  # continued
        b"00-" + b"f" * 5000: False,
        b"\xff\xfe not even text": False,
        f"00-{trace.upper()}-00F067AA0BA902B7-01".encode(): False,
    }
    jobs = {signed_job(settings, JobKind.VERIFY, raw).job_id: raw for raw in sent}
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for job_id, raw in jobs.items():
        job = signed_job(settings, JobKind.VERIFY, raw)
        producer.produce(
            settings.topics.jobs_requested,
            key=job_id.encode(),
            value=codec.encode(replace(job, job_id=job_id)),
            headers=[("traceparent", raw)],
        )
    assert producer.flush(30) == 0
    running(build(settings).run)

    done = read_topic(
        settings, settings.topics.job_status, until=lambda m: set(jobs) <= set(terminal(m))
    )
    assert {status.state for status in terminal(done).values()} == {StageState.SUCCEEDED}
    for message in done:
        status = codec.decode(message.value(), JobStatus)  # type: ignore[attr-defined]
        if status.job_id not in jobs:
            continue
        carried = parse(dict(message.headers())["traceparent"])  # type: ignore[attr-defined]
        assert carried is not None, status.job_id
        assert (carried.trace_id == trace) is sent[jobs[status.job_id]]
