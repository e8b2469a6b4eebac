"""The shared runner on the real broker: transactions, dead letters, shutdown."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

from eth_account import Account
from kafka_helpers import publish, read_topic

from anchorline import codec
from anchorline.blobstore import FileBlobStore
from anchorline.events import (
    JobKind,
    JobRequested,
    JobStatus,
    ProveRequested,
    Stage,
    StageState,
    new_id,
    utcnow,
)
from anchorline.manifest import sign_eip191
from anchorline.runner import StageRunner
from anchorline.settings import Settings
from anchorline_verifier.handler import VerifyHandler


def signed_job(settings: Settings, kind: JobKind, content: bytes) -> JobRequested:
    account = Account.create()
    uri, _ = FileBlobStore(settings.blobs).put_file(io.BytesIO(content))
    document = {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": account.address,
    }
    return JobRequested(
        job_id=new_id(),
        kind=kind,
        content_uri=uri,
        manifest=json.dumps(document),
        signature=sign_eip191(document, account.key.hex()),
        submitted_at=utcnow(),
    )


def statuses(messages: list[Any]) -> list[JobStatus]:
    return [codec.decode(message.value(), JobStatus) for message in messages]


def test_verifier_commits_results_and_dead_letters_poison(settings: Settings, running) -> None:
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
    assert StageState.RUNNING in {event.state for event in mine}
    succeeded = [event for event in mine if event.state is StageState.SUCCEEDED]
    assert len(succeeded) == 1 and not succeeded[0].final
    assert json.loads(succeeded[0].result or "{}")["checks"] == {
        "manifestOk": True,
        "manifestHashOk": True,
        "creatorOk": True,
    }


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
