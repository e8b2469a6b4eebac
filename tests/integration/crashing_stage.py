"""A stage whose handler ends the process on a marked record, as a segfault would: run by
test_crash_loop.py in a subprocess that the test restarts."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence

from anchorline.events import Event, JobRequested, Stage, StageState, refs_of
from anchorline.settings import Settings
from anchorline.stream.runner import StageRunner
from anchorline.stream.stage import Report

CRASH_MARK = "crash-"
EXIT_CRASHED = 13


class CrashingHandler:
    """Verifies nothing: succeeds every job of a batch, unless the batch holds a marked one."""

    stage = Stage.VERIFY
    consumes = JobRequested
    batched = True

    def handle(self, events: Sequence[JobRequested], report: Report) -> list[Event]:
        if any(event.job_id.startswith(CRASH_MARK) for event in events):
            os._exit(EXIT_CRASHED)
        return [refs_of(event)[0].status(self.stage, StageState.SUCCEEDED) for event in events]


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    StageRunner(CrashingHandler(), Settings.from_env(), service="crashing").run(stop)


if __name__ == "__main__":
    main()
