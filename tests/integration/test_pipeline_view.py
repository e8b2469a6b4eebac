"""The gateway's view of the pipeline, read from the real broker."""

from __future__ import annotations

from kafka_helpers import publish, wait_for

from anchorline.settings import Settings
from anchorline.store.blobstore import FileBlobStore
from anchorline.stream.runner import StageRunner
from anchorline_gateway.pipeline import KafkaPipelineView
from anchorline_verifier.handler import VerifyHandler


def test_lag_and_dead_letters_follow_the_verifier(settings: Settings, running) -> None:
    jobs = settings.topics.jobs_requested
    publish(settings, (jobs, b"junk one"), (jobs, b"junk two"), (jobs, b"junk three"))
    view = KafkaPipelineView(settings)
    before = view._read()
    assert before["stages"]["verify"]["lag"] == 3
    assert before["stages"]["verify"]["dead_letters"] == 0

    running(
        StageRunner(VerifyHandler(FileBlobStore(settings.blobs)), settings, service="verifier").run
    )

    after = wait_for(lambda: (v := view._read())["stages"]["verify"]["lag"] == 0 and v)
    # Three letters, and the commit marker of each transaction that wrote them: the runner takes
    # what has arrived, so the three may come in one transaction or in up to three.
    assert 3 <= after["stages"]["verify"]["dead_letters"] <= 3 + 3
    assert after["stages"]["prove"] == {
        "topic": settings.topics.prove_requested,
        "lag": 0,
        "waiting_to_retry": 0,
        "dead_letters": 0,
    }
