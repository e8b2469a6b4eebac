"""A handler past its stage's time limit, on the real broker: that record alone is retried
through the delay topics and dead-lettered, and the stage goes on with the rest."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from kafka_helpers import publish, read_topic, signed_job

from anchorline.events import Event, JobKind, JobRequested, JobStatus, StageState
from anchorline.settings import Settings
from anchorline.store.blobstore import FileBlobStore
from anchorline.stream import codec
from anchorline.stream.runner import StageRunner
from anchorline.stream.stage import Report
from anchorline_verifier.handler import VerifyHandler


class HangsOn(VerifyHandler):
    """The verifier, hanging on one job until released (as on a node that never answers)."""

    def __init__(self, blobs: FileBlobStore, *, job_id: str) -> None:
        super().__init__(blobs)
        self.job_id = job_id
        self.release = threading.Event()
        self.calls = 0

    def handle(self, events: Sequence[JobRequested], report: Report) -> Sequence[Event]:
        if any(event.job_id == self.job_id for event in events):
            self.calls += 1
            self.release.wait(120)
        return super().handle(events, report)


def statuses(messages: list[Any]) -> list[JobStatus]:
    return [codec.decode(message.value(), JobStatus) for message in messages]


def test_a_record_past_the_time_limit_is_retried_then_dead_lettered_alone(
    settings: Settings, running
) -> None:
    settings = replace(settings, verify_timeout_s=1.0, max_attempts=3)
    stuck = signed_job(settings, JobKind.VERIFY, b"this one hangs")
    fine = [signed_job(settings, JobKind.VERIFY, f"fine {n}".encode()) for n in range(3)]
    publish(settings, fine[0], stuck, *fine[1:])
    handler = HangsOn(FileBlobStore(settings.blobs), job_id=stuck.job_id)
    thread = running(StageRunner(handler, settings, service="verifier").run)
    try:
        letters = read_topic(
            settings,
            settings.topics.dead_letter(settings.topics.jobs_requested),
            until=lambda m: len(m) >= 1,
            timeout=120,
        )
        (letter,) = letters
        found = dict(letter.headers())  # type: ignore[attr-defined]
        assert letter.key() == stuck.job_id.encode()  # type: ignore[attr-defined]
        assert found["kafka_dlt-exception-fqcn"].endswith(b"StageTimeout")
        assert b"ran past its time limit of 1 s" in found["kafka_dlt-exception-message"]
        assert found["retry_topic-attempts"] == b"3"

        def outcomes(messages: list[Any]) -> dict[str, list[StageState]]:
            seen: dict[str, list[StageState]] = {}
            for status in statuses(messages):
                if status.state is not StageState.RUNNING:
                    seen.setdefault(status.job_id, []).append(status.state)
            return seen

        def settled(messages: list[Any]) -> bool:
            seen = outcomes(messages)
            return StageState.DEAD in seen.get(stuck.job_id, []) and all(
                StageState.SUCCEEDED in seen.get(job.job_id, []) for job in fine
            )

        seen = outcomes(read_topic(settings, settings.topics.job_status, until=settled))
        assert seen[stuck.job_id] == [StageState.RETRYING, StageState.RETRYING, StageState.DEAD]
        assert all(seen[job.job_id] == [StageState.SUCCEEDED] for job in fine)
        assert handler.calls == 3
        assert thread.is_alive(), "the stage stopped; a timeout must leave it running"
    finally:
        handler.release.set()
