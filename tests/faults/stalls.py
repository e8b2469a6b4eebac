"""How long the pipeline stood still: per stage from its events' times, and in the jobs table
as a reader of it saw it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from fault_harness import Cluster

SAMPLE_S = 0.5
STAGE_GAPS_SQL = (
    "select stage, occurred_at from job_events where state in ('succeeded', 'failed') "
    "order by stage, occurred_at"
)


def stage_gaps(cluster: Cluster) -> dict[str, tuple[float, datetime]]:
    """Stage → (the longest time between two of its outcomes, when that gap began)."""
    with cluster.engine.connect() as connection:
        rows = connection.execute(sa.text(STAGE_GAPS_SQL)).all()
    gaps: dict[str, tuple[float, datetime]] = {}
    previous: dict[str, datetime] = {}
    for stage, occurred in rows:
        if stage in previous:
            gap = (occurred - previous[stage]).total_seconds()
            if gap > gaps.get(stage, (0.0, occurred))[0]:
                gaps[stage] = (gap, previous[stage])
        previous[stage] = occurred
    return gaps


class StallMeter:
    """Samples how many jobs are terminal in the table, in a thread, while some are still open:
    the longest stretch without one more is the stall a user of the table saw."""

    def __init__(self, cluster: Cluster, jobs: Callable[[], set[str]]) -> None:
        self.cluster = cluster
        self.jobs = jobs
        self.longest = 0.0
        self.longest_began = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-meter", daemon=True)

    def __enter__(self) -> StallMeter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        last_count, since = -1, time.monotonic()
        while not self._stop.wait(SAMPLE_S):
            jobs = self.jobs()
            count = self.cluster.terminal_count(jobs)
            now = time.monotonic()
            if count != last_count or count >= len(jobs):
                last_count, since = count, now
            elif now - since > self.longest:
                self.longest, self.longest_began = now - since, since


def describe(cluster: Cluster, meter: StallMeter, *, fault_at: float, fault_wall: datetime) -> str:
    """The stalls, each with when it began relative to the fault."""
    stages = ", ".join(
        f"{stage} {gap:.1f} s (from {(began - fault_wall).total_seconds():+.0f} s)"
        for stage, (gap, began) in sorted(stage_gaps(cluster).items())
    )
    table = f"{meter.longest:.1f} s (from {meter.longest_began - fault_at:+.0f} s)"
    return f"longest gaps between outcomes: {stages}; jobs table {table}"
