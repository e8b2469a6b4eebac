"""The gateway's view of the pipeline, read from the real broker."""

from __future__ import annotations

from kafka_helpers import publish, wait_for

from anchorline.events import Stage
from anchorline.settings import Settings
from anchorline.store.blobstore import FileBlobStore
from anchorline.stream.runner import StageRunner
from anchorline_gateway.pipeline import KafkaPipelineView
from anchorline_verifier.handler import VerifyHandler


def test_lag_and_dead_letters_follow_the_verifier(settings: Settings, running) -> None:
    jobs = settings.topics.jobs_requested
    publish(settings, (jobs, b"junk one"), (jobs, b"junk two"), (jobs, b"junk three"))
    view = KafkaPipelineView(settings, sample_s=0.5)
    before = view.snapshot()
    assert before["stages"]["verify"]["lag"] == 3
    assert before["stages"]["verify"]["dead_letters"] == 0
    assert before["stages"]["verify"]["instances"]["members"] == [], before

    running(
        StageRunner(VerifyHandler(FileBlobStore(settings.blobs)), settings, service="verifier").run
    )

    after = wait_for(lambda: (v := view._read())["stages"]["verify"]["lag"] == 0 and v)
    # Messages, not offsets: the commit marker of each transaction that wrote the three letters
    # takes an offset of the dead-letter topic too, and is no letter.
    assert after["stages"]["verify"]["dead_letters"] == 3
    prove = after["stages"]["prove"]
    assert (prove["lag"], prove["waiting_to_retry"], prove["dead_letters"]) == (0, 0, 0)
    assert (prove["exact"], prove["partitions"]) == (True, {})
    (member,) = wait_for(lambda: view._read()["stages"]["verify"]["instances"]["members"])
    partitions = settings.partitions * len(settings.topics.lanes(Stage.VERIFY))  # a priority each
    assert len(member["partitions"]) == partitions and member["client_id"].startswith(
        "anchorline-verifier"
    )

    def processed() -> list[float]:
        history = view.snapshot()["history"]
        return [s["stages"]["verify"]["per_s"] for s in history if s["stages"]["verify"]["per_s"]]

    assert wait_for(processed)  # the three, taken between two samples
    view.close()


def test_a_backlog_is_counted_in_messages_by_partition(settings: Settings) -> None:
    jobs = settings.topics.jobs_requested
    publish(settings, *[(jobs, f"waiting {n}".encode()) for n in range(7)])
    view = KafkaPipelineView(settings)
    verify = view._read()["stages"]["verify"]
    assert (verify["lag"], verify["exact"]) == (7, True)
    assert sum(verify["partitions"].values()) == 7
    assert all(name.startswith(f"{jobs}:") for name in verify["partitions"])
    view.close()
