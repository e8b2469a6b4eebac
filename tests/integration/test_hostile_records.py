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
