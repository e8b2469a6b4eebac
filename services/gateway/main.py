"""Composition root of the gateway."""

from __future__ import annotations

import uvicorn
from starlette.applications import Starlette

from anchorline.settings import Settings
from anchorline.store.blobs import blob_store
from anchorline.store.db import make_engine
from anchorline.store.schedules import SqlSchedules
from anchorline.stream.tracing import tracer_for
from anchorline_gateway.app import Gateway, create_app
from anchorline_gateway.http11 import BoundedHttpTools
from anchorline_gateway.idempotency import SqlIdempotencyKeys
from anchorline_gateway.letters import KafkaDeadLetters
from anchorline_gateway.limits import Limits
from anchorline_gateway.pipeline import KafkaPipelineView
from anchorline_gateway.publisher import KafkaPublisher
from anchorline_gateway.reads import SqlJobReader
from anchorline_gateway.schedules import ScheduleBook


def build(settings: Settings) -> Starlette:
    engine = make_engine(settings.db_url)
    gateway = Gateway(
        blobs=blob_store(settings),
        publisher=KafkaPublisher(settings),
        reader=SqlJobReader(engine),
        idempotency=SqlIdempotencyKeys(engine, ttl_s=settings.idempotency_ttl_s),
        api_keys=settings.api_key_tenants,
        admin_keys=settings.admin_key_set,
        pipeline=KafkaPipelineView(settings, reader=settings.desk),
        dead_letters=KafkaDeadLetters(settings.desk),
        limits=Limits.from_settings(settings),
        trust_file=settings.trust_file,
        topics=settings.topics,
        priority_defaults=settings.priority_default_map,
        schedules=ScheduleBook(
            SqlSchedules(engine),
            min_interval_s=settings.schedule_min_interval_s,
            max_per_tenant=settings.max_schedules,
        ),
        tracer=tracer_for(settings, service="gateway"),
    )
    return create_app(gateway)


def serve(settings: Settings) -> None:
    uvicorn.run(
        build(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        log_config=None,  # the command's logging (JSON lines or text), not uvicorn's own
        # A line per request was a tenth of the event loop's time at a few hundred requests/s.
        access_log=settings.log_level.upper() == "DEBUG",
        timeout_graceful_shutdown=10,
        http=BoundedHttpTools,  # httptools, its request heads bounded (http11.py)
        loop="auto",  # uvloop (a dependency): about a tenth less CPU a request than asyncio's
    )
