"""What services and commands log, against the real broker: job ids, and no librdkafka noise."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kafka_helpers import publish, read_topic, signed_job

from anchorline.events import JobKind, JobRequested
from anchorline.infra.ports import free_port
from anchorline.settings import Settings
from anchorline.store.blobstore import FileBlobStore
from anchorline.stream.runner import StageRunner
from anchorline_verifier.handler import VerifyHandler

ANCHORLINE = str(Path(sys.executable).parent / "anchorline")


def test_every_retry_and_dead_letter_line_names_its_job(
    settings: Settings, running, caplog: pytest.LogCaptureFixture
) -> None:
    job = signed_job(settings, JobKind.VERIFY, b"x")
    job = JobRequested(**{**job.__dict__, "content_uri": "sha256:" + "ab" * 32})
    publish(settings, job)
    caplog.set_level(logging.INFO, logger="anchorline.stream.runner")
    running(StageRunner(VerifyHandler(FileBlobStore(settings.blobs)), settings, service="v").run)
    dlq = settings.topics.dead_letter(settings.topics.jobs_requested)
    read_topic(settings, dlq, until=lambda m: len(m) >= 1)
    about = [r for r in caplog.records if "attempt" in r.getMessage() or "dead-letter" in r.message]
    assert len(about) == settings.max_attempts
    assert {getattr(record, "job_id", None) for record in about} == {job.job_id}


def test_a_command_without_a_broker_says_so_in_one_line() -> None:
    env = os.environ | {"ANCHORLINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    done = subprocess.run(
        [ANCHORLINE, "dlq", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1, done.stderr[:2000]
    assert "anchorline: Kafka at 127.0.0.1:" in done.stderr
    assert "|FAIL|" not in done.stdout + done.stderr
