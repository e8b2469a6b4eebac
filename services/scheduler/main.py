"""Composition root of the scheduler."""

from __future__ import annotations

from anchorline.settings import Settings
from anchorline.store.db import make_engine
from anchorline.store.schedules import SqlSchedules
from anchorline.stream.publisher import KafkaPublisher
from anchorline_scheduler.service import Scheduler


def build(settings: Settings) -> Scheduler:
    return Scheduler(
        SqlSchedules(make_engine(settings.db_url)),
        KafkaPublisher(settings),
        tick_s=settings.scheduler_tick_s,
        floor_s=settings.schedule_min_interval_s,
        lease_s=settings.scheduler_lease_s,
    )
