"""Several verifier processes in one group; one of them drained with SIGTERM mid-load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from kafka_helpers import publish, read_topic, signed_job

from anchorline.events import JobKind, JobStatus, StageState, new_id
from anchorline.settings import Settings
from anchorline.stream import codec

JOBS = 400


def start_verifier(settings: Settings, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = os.environ | settings.as_env() | extra
    command = [sys.executable, "-m", "anchorline.cli", "run", "verifier"]
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


def succeeded(settings: Settings, messages: list[object]) -> Counter[str]:
    done: Counter[str] = Counter()
    for message in messages:
        status = codec.decode(message.value(), JobStatus)  # type: ignore[attr-defined]
        if status.state is StageState.SUCCEEDED:
            done[status.job_id] += 1
    return done


def test_sigterm_drains_one_process_and_the_group_loses_and_repeats_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    settings = replace(settings, partitions=4, poll_batch=8)
    template = signed_job(settings, JobKind.VERIFY, b"scaled content")
    jobs = [replace(template, job_id=new_id()) for _ in range(JOBS)]
    first = start_verifier(settings, tmp_path / "a.log")
    second = start_verifier(settings, tmp_path / "b.log", ANCHORLINE_CONCURRENCY="2")
    try:
        publish(settings, *jobs)
        read_topic(
            settings,
            settings.topics.job_status,
            until=lambda m: len(succeeded(settings, m)) >= JOBS // 4,
            timeout=120,
        )
        stopped_at = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0, (tmp_path / "a.log").read_text()[-2000:]
        drain_s = time.monotonic() - stopped_at

        statuses = read_topic(
            settings,
            settings.topics.job_status,
            until=lambda m: len(succeeded(settings, m)) >= JOBS,
            timeout=180,
        )
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.terminate()
                process.wait(30)
    done = succeeded(settings, statuses)
    print(f"{JOBS} jobs, {len(done)} succeeded, drain {drain_s:.1f}s")
    assert set(done) == {job.job_id for job in jobs}
    assert max(done.values()) == 1, "a job succeeded twice"
    assert drain_s < 30
