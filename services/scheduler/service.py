"""The scheduler: fires due schedules' occurrences as jobs, each exactly once.

Each tick claims the due schedules in one database transaction that records each occurrence
(with a lease) and advances the schedule, then publishes the occurrences' jobs the way the
gateway publishes a job, then records them published. Two schedulers never claim one
occurrence; one that dies after its claim leaves the occurrence leased, and once the lease runs
out another (or it, restarted) publishes it. A job's id is derived from its schedule and
occurrence, so one published again after a crash between Kafka's acknowledgement and the
record of it is the same job, which the pipeline keeps once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from anchorline.events import utcnow
from anchorline.store.schedules import Occurrence, SqlSchedules, job_of
from anchorline.stream.publisher import Publisher
from anchorline_scheduler import metrics
from anchorline_scheduler.plan import plan

log = logging.getLogger(__name__)

LEASE_S = 30.0  # longer than a publish may take (the publisher's timeout, 5 s)
BATCH = 100  # occurrences claimed in one transaction


class Scheduler:
    """Fires due occurrences every `tick_s` until stopped."""

    def __init__(
        self,
        store: SqlSchedules,
        publisher: Publisher,
        *,
        tick_s: float,
        floor_s: float,
        lease_s: float = LEASE_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.tick_s = tick_s
        self.plan = functools.partial(plan, floor_s=floor_s)
        self.lease_s = lease_s
        self.clock = clock

    def run(self, stop: threading.Event) -> None:
        asyncio.run(self._run(stop))

    async def _run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except SQLAlchemyError as exc:
                    log.warning("schedules database did not answer: %s", exc)
                await asyncio.to_thread(stop.wait, self.tick_s)
        finally:
            self.publisher.close()
            self.store.close()

    async def tick(self) -> int:
        """Claim what is due now (and what another scheduler left unpublished) and publish it;
        how many were published."""
        now = self.clock()
        due = self.store.claim_due(now, plan=self.plan, limit=BATCH, lease_s=self.lease_s)
        metrics.FIRED.inc(len(due))
        due += self.store.claim_unpublished(now, limit=BATCH, lease_s=self.lease_s)
        return await self.publish(due)

    async def publish(self, occurrences: list[Occurrence]) -> int:
        outcomes = await asyncio.gather(
            *(self.publisher.publish(job_of(occurrence)) for occurrence in occurrences),
            return_exceptions=True,
        )
        done = []
        for occurrence, outcome in zip(occurrences, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                # Left leased: published again once the lease runs out.
                log.warning("job %s not published: %s", occurrence.job_id, outcome)
                metrics.UNPUBLISHED.inc()
            else:
                done.append(occurrence.job_id)
        self.store.published(done, self.clock())
        metrics.PUBLISHED.inc(len(done))
        return len(done)
