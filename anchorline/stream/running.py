"""`running` statuses only for jobs that run long enough for anyone to see them run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from functools import partial

from anchorline.events import JobStatus, StageState


class RunningStatuses:
    """Holds each job's first `running` status for `after_s`, and publishes it only if the job is
    still in hand then. Progress a job reports meanwhile replaces what it holds (the latest goes
    out when due); once a job has shown `running`, each progress it reports goes out at once. A
    batch that ends sooner drops what it held: its outcomes say more, and rank above `running`.

    Publishing one per job cost a status message, its encoding and a synchronous flush per batch
    for a state nobody could see: a 4 KiB job is `running` for about a millisecond. Progress
    went out at once before: a 4 MiB content (four chunks, 5 ms) gave four statuses a job, each
    in a projector batch of its own, and two verifiers verified 1.08 times what one did.
    """

    def __init__(
        self,
        publish: Callable[[JobStatus], None],
        *,
        after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publish = publish
        self.after_s = after_s
        self.clock = clock
        # Each job's due time and how to make the status it holds (made only when published).
        self._held: dict[str, tuple[float, Callable[[], JobStatus]]] = {}
        self._lock = threading.Lock()

    def report(self, status: JobStatus) -> None:
        if self.after_s <= 0 or status.state is not StageState.RUNNING:
            self.publish(status)
            return
        with self._lock:
            held = self._held.get(status.job_id)
            if held is not None:  # not shown yet: the latest word waits for the same moment
                self._held[status.job_id] = (held[0], partial(_same, status))
                return
            if status.progress:  # shown already (or never announced): progress goes out now
                self.publish(status)
                return
            self._held[status.job_id] = (self.clock() + self.after_s, partial(_same, status))

    def announce(self, job_id: str, make: Callable[[], JobStatus]) -> None:
        """A job is in hand from now: its first `running` status (`make`, progress 0) is held as
        `report` holds one, and made only if it comes due."""
        if self.after_s <= 0:
            self.publish(make())
            return
        with self._lock:
            held = self._held.get(job_id)
            self._held[job_id] = (held[0] if held else self.clock() + self.after_s, make)

    def finished(self, job_ids: Iterable[str]) -> None:
        """These jobs' handler calls returned: what they still hold is not worth publishing.
        A batch's jobs run one after another; held until the batch settled, the first jobs of a
        long batch (128 contents of 1 MiB take a quarter of a second) showed `running` though
        each took two milliseconds: 2,912 such statuses for 10,000 jobs."""
        with self._lock:
            for job_id in job_ids:
                self._held.pop(job_id, None)

    def publish_due(self) -> None:
        """Publish the held statuses of jobs in hand for `after_s` already."""
        now = self.clock()
        with self._lock:  # held while publishing: after settle() returns, nothing more goes out
            due = [job_id for job_id, (at, _) in self._held.items() if at <= now]
            for job_id in due:
                self.publish(self._held.pop(job_id)[1]())

    def settle(self) -> None:
        """The batch in hand is done: what it still holds is not worth publishing."""
        with self._lock:
            self._held.clear()

    def run(self, stop: threading.Event) -> None:
        """Publish held statuses as they come due, until `stop` is set."""
        if self.after_s <= 0:
            return
        while not stop.wait(self.after_s / 2):
            self.publish_due()


def _same(status: JobStatus) -> JobStatus:
    return status
