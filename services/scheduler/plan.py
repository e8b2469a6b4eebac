"""plan(schedule, now) -> Firing: which occurrence a due schedule fires, and its next one."""

from __future__ import annotations

from datetime import datetime, timedelta

from croniter import CroniterError

from anchorline.cadence import Cron
from anchorline.store.schedules import Firing, Schedule

TICK = timedelta(microseconds=1)


def plan(schedule: Schedule, now: datetime, *, floor_s: float) -> Firing:
    """A due schedule's firing. After downtime only the latest occurrence missed fires (once);
    the next one is at least `floor_s` after it, whatever a clock change (DST) does to the
    cron's times. A one-time schedule fires its moment and is done."""
    due = schedule.next_fire_at
    assert due is not None, "only a schedule with a next occurrence is due"
    if schedule.cron is None:
        return Firing(due, None)
    cron = Cron(schedule.cron, schedule.timezone or "UTC")
    try:
        latest = max(due, cron.latest_until(now))
        following = cron.next_after(max(now, latest + timedelta(seconds=floor_s) - TICK))
    except (CroniterError, ValueError, OverflowError):
        return Firing(due, None)  # it has no occurrence left
    return Firing(latest, following)
