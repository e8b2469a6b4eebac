"""The fault harness itself: what it leaves behind when a scenario fails half-way."""

from __future__ import annotations

from pathlib import Path

from fault_harness import Submitter, Workload

from anchorline.infra.ports import free_port
from anchorline.settings import Settings


def test_closing_a_submitter_stops_its_thread_before_dropping_its_producer(
    tmp_path: Path,
) -> None:
    """A fault function that raised left the submitter producing on the producer that
    close() had dropped: a second error, in teardown, hiding the first."""
    submitter = Submitter(Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}"))
    submitter.start(Workload.create(tmp_path, contents=1, creators=1), 1_000, rate=20)
    submitter.wait_sent(3, timeout=30)
    assert submitter._thread is not None and submitter._thread.is_alive()
    submitter.close()
    assert not submitter._thread.is_alive()
    assert submitter.producer is None and 3 <= submitter.sent < 1_000
