"""Dead letters on the real broker: listed, filtered, replayed once, recorded in the history."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import sqlalchemy as sa
from kafka_helpers import publish, read_topic, signed_job, wait_for

from anchorline.cli.main import main
from anchorline.events import JobKind
from anchorline.settings import Settings
from anchorline.store.blobstore import FileBlobStore
from anchorline.store.db import make_engine
from anchorline.store.migrate import upgrade
from anchorline.stream import codec, dlq
from anchorline.stream.runner import StageRunner
from anchorline_gateway.reads import SqlJobReader
from anchorline_projector.service import Projector
from anchorline_projector.store import SqlJobStore
from anchorline_verifier.handler import VerifyHandler


def test_dead_jobs_replay_once_after_the_cause_is_fixed(
    settings: Settings, running, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = replace(settings, retry_delays_s="0.2", max_attempts=2)
    engine = make_engine(settings.db_url)
    upgrade(engine)
    content = b"arrives late"
    job = signed_job(settings, JobKind.VERIFY, content)
    blobs = FileBlobStore(settings.blobs)
    blobs.path_of(job.content_uri.removeprefix("sha256:"), tenant=None).unlink()  # not there yet
    publish(settings, job, (settings.topics.jobs_requested, b"rubbish"))
    running(StageRunner(VerifyHandler(blobs), settings, service="verifier").run)
    running(Projector(settings, SqlJobStore(engine)).run)
    reader = SqlJobReader(engine)

    dead = wait_for(lambda: (reader.get(job.job_id) or {}).get("state") == "dead")
    letters = wait_for(
        lambda: (
            list(dlq.read_letters(settings, "verify"))
            if len(list(dlq.read_letters(settings, "verify"))) >= 2
            else None
        )
    )
    assert dead
    assert {tuple(letter.job_ids()) for letter in letters} == {(job.job_id,), ()}
    by_job = [one for one in letters if dlq.LetterFilter(job_id=job.job_id).matches(one)]
    assert len(by_job) == 1 and by_job[0].attempts == 2
    assert "not in the blob store" in by_job[0].error
    assert [
        one.job_ids() for one in letters if dlq.LetterFilter(error="single-object").matches(one)
    ] == [[]]

    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["dlq", "replay", "--stage", "verify", "--job", job.job_id, "--dry-run"]) == 0
    assert "would replay" in capsys.readouterr().out
    assert reader.get(job.job_id)["state"] == "dead"  # type: ignore[index]

    blobs.put_file(io.BytesIO(content))  # the cause is fixed
    assert main(["dlq", "replay", "--stage", "verify", "--job", job.job_id]) == 0
    assert "replayed 1" in capsys.readouterr().out
    record = wait_for(lambda: (r := reader.get(job.job_id)) and r["state"] == "succeeded" and r)
    assert record["result"]["verify"]["checks"]["creatorOk"] is True

    assert main(["dlq", "replay", "--stage", "verify", "--job", job.job_id]) == 0
    assert "0 to replay, 1 replayed before" in capsys.readouterr().out
    requests = read_topic(
        settings, settings.topics.jobs_requested, until=lambda m: False, timeout=3
    )
    replays = [
        m
        for m in requests  # the original, its retry back from the delay topic, one replay
        if m.value() == codec.encode(job) and "anchorline-replay-of" in dict(m.headers() or [])  # type: ignore[attr-defined]
    ]
    assert len(replays) == 1

    history = reader.history(job.job_id)
    replays = [event for event in history if (event["note"] or "").startswith("replayed from")]
    assert [event["state"] for event in replays] == ["queued"]
    with engine.connect() as connection:
        wins = connection.execute(
            sa.text("select count(*) from job_events where job_id = :j and state = 'succeeded'"),
            {"j": job.job_id},
        ).scalar_one()
    assert wins == 1
    engine.dispose()
