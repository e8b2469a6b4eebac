"""The shared runner on the real broker: transactions, dead letters, shutdown."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from confluent_kafka import Producer
from kafka_helpers import publish, read_topic, signed_job

from anchorline.events import (
    JobKind,
    JobRequested,
    JobStatus,
    ProveRequested,
    Stage,
    StageState,
    new_id,
)
from anchorline.infra.anvil import AnvilChain
from anchorline.settings import Settings
from anchorline.store.blobstore import FileBlobStore
from anchorline.stream import codec
from anchorline.stream.delay import DelayForwarder
from anchorline.stream.runner import StageRunner
from anchorline_verifier.handler import VerifyHandler
from anchorline_verifier.onchain import RpcContentRegistry


def statuses(messages: list[Any]) -> list[JobStatus]:
    return [codec.decode(message.value(), JobStatus) for message in messages]


def test_verifier_commits_results_and_dead_letters_poison(settings: Settings, running) -> None:
    settings = replace(settings, running_status_after_s=0.0)  # every running and progress
    good = signed_job(settings, JobKind.PROOF, b"some content " * 5000)
    wrong_type = JobStatus(
        job_id=new_id(), kind=JobKind.VERIFY, stage=Stage.VERIFY, state=StageState.QUEUED
    )
    publish(
        settings,
        good,
        (settings.topics.jobs_requested, b"\x00not avro at all"),
        (settings.topics.jobs_requested, codec.encode(wrong_type)),
    )
    handler = VerifyHandler(FileBlobStore(settings.blobs), chunk_size=4096)
    running(StageRunner(handler, settings, service="verifier").run)

    proves = read_topic(settings, settings.topics.prove_requested, until=lambda m: len(m) >= 1)
    request = codec.decode(proves[0].value(), ProveRequested)  # type: ignore[attr-defined]
    assert request.job_id == good.job_id
    assert request.content_sha256 == "0x" + hashlib.sha256(b"some content " * 5000).hexdigest()

    dead = read_topic(
        settings,
        settings.topics.dead_letter(settings.topics.jobs_requested),
        until=lambda m: len(m) >= 2,
    )
    reasons = [dict(message.headers())["kafka_dlt-exception-message"] for message in dead]  # type: ignore[attr-defined]
    assert len(dead) == 2
    assert any(b"not single-object encoded" in reason for reason in reasons)
    assert any(b"expected JobRequested, got JobStatus" in reason for reason in reasons)

    events = statuses(
        read_topic(
            settings,
            settings.topics.job_status,
            until=lambda m: any(s.state is StageState.SUCCEEDED for s in statuses(m)),
        )
    )
    mine = [event for event in events if event.job_id == good.job_id]
    progress = [e.progress for e in mine if e.state is StageState.RUNNING]
    assert progress[0] == 0 and any(0 < (p or 0) < 100 for p in progress), progress
    succeeded = [event for event in mine if event.state is StageState.SUCCEEDED]
    assert len(succeeded) == 1 and not succeeded[0].final
    assert json.loads(succeeded[0].result or "{}")["checks"] == {
        "manifestOk": True,
        "manifestHashOk": True,
        "creatorOk": True,
    }


def test_a_job_done_within_the_running_delay_publishes_only_its_outcome(
    settings: Settings, running
) -> None:
    """Its progress too: 65 KB read in 4 KiB chunks reports it at each tenth, none shown."""
    settings = replace(settings, running_status_after_s=30.0)
    job = signed_job(settings, JobKind.VERIFY, b"some content " * 5000)
    publish(settings, job)
    handler = VerifyHandler(FileBlobStore(settings.blobs), chunk_size=4096)
    running(StageRunner(handler, settings, service="verifier").run)

    events = statuses(
        read_topic(
            settings,
            settings.topics.job_status,
            until=lambda m: any(s.state is StageState.SUCCEEDED for s in statuses(m)),
        )
    )
    assert [event.state for event in events if event.job_id == job.job_id] == [StageState.SUCCEEDED]


def test_a_poll_batch_is_looked_up_on_chain_together(
    settings: Settings, running, anvil: AnvilChain, registry_address: str
) -> None:
    jobs = [signed_job(settings, JobKind.VERIFY, f"content {n}".encode()) for n in range(4)]
    publish(settings, *jobs)
    with contextlib.closing(RpcContentRegistry(anvil.url, registry_address)) as registry:
        handler = VerifyHandler(FileBlobStore(settings.blobs), registry=registry)
        running(StageRunner(handler, settings, service="verifier").run)

        def outcomes(messages: list[Any]) -> list[JobStatus]:
            return [s for s in statuses(messages) if s.state is StageState.SUCCEEDED]

        done = outcomes(
            read_topic(settings, settings.topics.job_status, until=lambda m: len(outcomes(m)) >= 4)
        )
    assert sorted(s.job_id for s in done) == sorted(job.job_id for job in jobs)
    for status in done:
        onchain = json.loads(status.result or "{}")["onchain"]
        assert (onchain["registered"], onchain["registry"]) == (False, registry_address)


def test_missing_content_retries_then_dies(settings: Settings, running) -> None:
    job = signed_job(settings, JobKind.VERIFY, b"x")
    job = JobRequested(**{**job.__dict__, "content_uri": "sha256:" + "ab" * 32})
    publish(settings, job)
    handler = VerifyHandler(FileBlobStore(settings.blobs))
    running(StageRunner(handler, settings, service="verifier").run)

    events = statuses(
        read_topic(
            settings,
            settings.topics.job_status,
            until=lambda m: any(s.state is StageState.DEAD for s in statuses(m)),
        )
    )
    retrying = [event for event in events if event.state is StageState.RETRYING]
    assert len(retrying) == settings.max_attempts - 1
    assert all(event.next_attempt_at is not None for event in retrying)
    dead = [event for event in events if event.state is StageState.DEAD]
    assert dead[0].final and "not in the blob store" in (dead[0].error or "")
    letters = read_topic(
        settings,
        settings.topics.dead_letter(settings.topics.jobs_requested),
        until=lambda m: len(m) >= 1,
    )
    assert codec.decode(letters[0].value(), JobRequested).job_id == job.job_id  # type: ignore[attr-defined]


def test_a_held_retry_does_not_hold_up_other_partitions(settings: Settings, running) -> None:
    """A message due in a minute sits in partition 0 while one due now passes on partition 1."""
    late = signed_job(settings, JobKind.VERIFY, b"late")
    ready = signed_job(settings, JobKind.VERIFY, b"ready")
    delay_topic = settings.topics.retry(settings.topics.jobs_requested, 1)
    now_ms = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    for partition, job, due in ((0, late, now_ms + 60_000), (1, ready, now_ms)):
        producer.produce(
            delay_topic,
            partition=partition,
            key=job.job_id.encode(),
            value=codec.encode(job),
            headers=[
                ("retry_topic-attempts", b"2"),
                ("retry_topic-backoff-timestamp", str(due).encode()),
            ],
        )
    assert producer.flush(30) == 0
    running(DelayForwarder(settings, service="verifier", source=settings.topics.jobs_requested).run)

    returned = read_topic(
        settings, settings.topics.jobs_requested, until=lambda m: len(m) >= 1, timeout=20
    )
    time.sleep(2)  # give the held one every chance to leak through
    returned = read_topic(
        settings, settings.topics.jobs_requested, until=lambda m: False, timeout=3
    )
    ids = [codec.decode(m.value(), JobRequested).job_id for m in returned]  # type: ignore[attr-defined]
    assert ids == [ready.job_id]
    assert dict(returned[0].headers())["retry_topic-attempts"] == b"2"  # type: ignore[attr-defined]


def test_a_runner_that_fails_stops_its_helper_threads(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = StageRunner(VerifyHandler(FileBlobStore(settings.blobs)), settings, service="verifier")

    def broken() -> None:
        raise RuntimeError("a bug in the loop")

    monkeypatch.setattr(runner, "_poll_once", broken)
    with pytest.raises(RuntimeError, match="a bug in the loop"):
        runner.run(threading.Event())  # never set: only the failure ends the loop
    helpers = [t for t in threading.enumerate() if t.name in ("delay", "running")]
    assert helpers == []


def _send_again(settings: Settings, job: JobRequested, stamp: int, copies: int) -> None:
    """What an idempotent producer that bumped its epoch with the request in flight does
    (resends.py): the same bytes, headers and timestamp at the next offset."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for _ in range(copies):
        producer.produce(
            settings.topics.jobs_requested,
            key=job.job_id.encode(),
            value=codec.encode(job),
            timestamp=stamp,
            headers=[("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")],
        )
    assert producer.flush(30) == 0


def _succeeded(job: JobRequested, messages: list[Any]) -> list[JobStatus]:
    return [
        s for s in statuses(messages) if s.job_id == job.job_id and s.state is StageState.SUCCEEDED
    ]


def test_a_request_written_twice_by_its_producer_is_handled_once(
    settings: Settings, running
) -> None:
    job = signed_job(settings, JobKind.VERIFY, b"sent twice " * 100)
    _send_again(settings, job, int(time.time() * 1000), copies=2)
    handler = VerifyHandler(FileBlobStore(settings.blobs), chunk_size=4096)
    running(StageRunner(handler, settings, service="verifier").run)

    read_topic(settings, settings.topics.job_status, until=lambda m: bool(_succeeded(job, m)))
    # Read on for a while: the second copy must never give a second outcome.
    everything = read_topic(settings, settings.topics.job_status, until=lambda m: False, timeout=8)
    assert len(_succeeded(job, everything)) == 1


def test_a_copy_reaching_the_partitions_next_owner_is_handled_once(
    settings: Settings, running
) -> None:
    """The first copy committed by one process, the copy polled by the next one (a new
    process with an empty memory): the digests committed with the offset tell it."""
    job = signed_job(settings, JobKind.VERIFY, b"sent twice, read by two " * 100)
    stamp = int(time.time() * 1000)
    handler = VerifyHandler(FileBlobStore(settings.blobs), chunk_size=4096)
    _send_again(settings, job, stamp, copies=1)
    stop = threading.Event()
    first = threading.Thread(
        target=StageRunner(handler, settings, service="verifier").run, args=(stop,)
    )
    first.start()
    try:
        read_topic(settings, settings.topics.job_status, until=lambda m: bool(_succeeded(job, m)))
    finally:
        stop.set()
        first.join(30)
    assert not first.is_alive()

    _send_again(settings, job, stamp, copies=1)
    later = signed_job(settings, JobKind.VERIFY, b"sent once, after the copy " * 100)
    publish(settings, later)
    running(StageRunner(handler, settings, service="verifier").run)
    read_topic(settings, settings.topics.job_status, until=lambda m: bool(_succeeded(later, m)))
    everything = read_topic(settings, settings.topics.job_status, until=lambda m: False, timeout=5)
    assert len(_succeeded(job, everything)) == 1
