"""Rebuild the jobs table from the status topic: the table is a projection, the topic the truth."""

from __future__ import annotations

import logging

from anchorline.errors import IncompleteRead, Retryable
from anchorline.events import JobStatus
from anchorline.settings import Settings
from anchorline.stream import headers, tracing
from anchorline.stream.registry_codec import codec_for, decode
from anchorline.stream.topic_reader import read_to_end
from anchorline_projector.apply import check_status
from anchorline_projector.store import SqlJobStore

log = logging.getLogger(__name__)
BATCH = 1000


def rebuild(settings: Settings, store: SqlJobStore) -> tuple[int, int]:
    """Empty the tables and apply every status event; returns (events applied, undecodable)."""
    store.clear()
    codec = codec_for(settings)
    pending: list[JobStatus] = []
    traces: dict[str, str] = {}  # the trace id each status carried, by event id
    applied = skipped = 0
    try:
        for message in read_to_end(settings, settings.topics.job_status):
            try:
                event = check_status(decode(codec, message.value(), JobStatus))
            except Retryable:  # the schema registry did not answer: no table from part of it
                raise
            except Exception:  # what the live projector dead-lettered: a forged or broken event
                skipped += 1
                continue
            pending.append(event)
            context = tracing.of_headers(headers.as_map(message.headers()))
            if context is not None:
                traces[event.event_id] = context.trace_id
            if len(pending) >= BATCH:
                store.apply_batch(pending, traces=traces)
                applied += len(pending)
                pending, traces = [], {}
    except IncompleteRead as exc:
        raise IncompleteRead(
            f"{exc}; the jobs table holds only the {applied} events read before that: "
            "run the rebuild again"
        ) from exc
    finally:
        codec.close()
    store.apply_batch(pending, traces=traces)
    return applied + len(pending), skipped
