"""A record that ends the process handling it is found after restarts and dead-lettered, on
the real broker; the records around it, in the same batches, are handled once each."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from crashing_stage import CRASH_MARK, EXIT_CRASHED
from kafka_helpers import read_topic, signed_job

from anchorline.events import JobKind, JobStatus, StageState
from anchorline.settings import Settings
from anchorline.stream import codec

STAGE = Path(__file__).with_name("crashing_stage.py")


def nothing(messages: list[Any]) -> bool:
    return False  # read the whole topic


def succeeded(messages: list[Any]) -> list[str]:
    statuses = [codec.decode(message.value(), JobStatus) for message in messages]
    return [s.job_id for s in statuses if s.state is StageState.SUCCEEDED]


def test_a_record_that_kills_its_process_is_dead_lettered_after_max_deliveries(
    settings: Settings, tmp_path: Path
) -> None:
    jobs = [signed_job(settings, JobKind.VERIFY, f"job {n}".encode()) for n in range(6)]
    jobs[2] = replace(jobs[2], job_id=CRASH_MARK + jobs[2].job_id[:30])
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    for job in jobs:  # one partition, so the marked record has neighbours in its batches
        producer.produce(
            settings.topics.jobs_requested,
            value=codec.encode(job),
            key=job.job_id.encode(),
            partition=0,
        )
    assert producer.flush(30) == 0
    env = {
        **os.environ,
        **settings.as_env(),
        "ANCHORLINE_SESSION_TIMEOUT_S": "6",
        "ANCHORLINE_BATCH_MAX_WAIT_S": "1",
        "ANCHORLINE_MAX_DELIVERIES": "3",
    }
    crashes = 0
    letter_topic = settings.topics.dead_letter(settings.topics.jobs_requested)
    letters: list[Any] = []
    with (tmp_path / "stage.log").open("wb") as log:
        while not letters and crashes <= 6:
            stage = subprocess.Popen([sys.executable, str(STAGE)], env=env, stdout=log, stderr=log)
            try:
                deadline = time.monotonic() + 60
                while stage.poll() is None and time.monotonic() < deadline and not letters:
                    letters = read_topic(settings, letter_topic, until=bool, timeout=2)
            finally:
                if stage.poll() is None:
                    stage.terminate()
                    stage.wait(30)
            if stage.returncode == EXIT_CRASHED:
                crashes += 1
    assert letters, f"no dead letter after {crashes} crashes; see {tmp_path / 'stage.log'}"
    (letter,) = letters
    assert letter.key() == jobs[2].job_id.encode()
    reason = dict(letter.headers())["kafka_dlt-exception-message"]
    assert b"delivered 3 times and never committed" in reason
    assert crashes == 4  # once in its first batch, then alone three times
    done = succeeded(read_topic(settings, settings.topics.job_status, until=nothing, timeout=5))
    innocent = sorted(job.job_id for index, job in enumerate(jobs) if index != 2)
    assert sorted(done) == innocent, "each job around the marked one succeeded exactly once"
