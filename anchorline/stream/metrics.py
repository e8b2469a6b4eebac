"""Prometheus metrics of the stages (prometheus_client's default registry; lag.py: consumer lag).

A process serves them on ANCHORLINE_METRICS_PORT (`serve`); `anchorline up` gives each of its
worker processes a port of its own. The README (Metrics) lists every metric.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prometheus_client import Counter, Histogram, start_http_server

from anchorline.stream.exactly_once import Outgoing
from anchorline.stream.topics import Topics

log = logging.getLogger(__name__)

PROCESSED = Counter(
    "anchorline_stage_processed", "Input records a stage handled and committed.", ["stage"]
)
FAILED = Counter("anchorline_stage_failed", "Jobs a stage ended failed (permanent).", ["stage"])
RETRIED = Counter(
    "anchorline_stage_retried", "Records a stage sent to one of its delay topics.", ["stage"]
)
DEAD_LETTERED = Counter(
    "anchorline_stage_dead_lettered", "Records a stage sent to its dead-letter topic.", ["stage"]
)
HANDLER_SECONDS = Histogram(
    "anchorline_stage_handler_seconds",
    "Time a stage took to handle one batch (decode, handler, encode), before its commit.",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCH_SIZE = Histogram(
    "anchorline_stage_batch_size",
    "Records in one batch a stage handled.",
    ["stage"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)


class StageMetrics:
    """What one stage runner counts, after each commit (a rolled-back batch counts nothing)."""

    def __init__(self, stage: str, *, topics: Topics, source: str) -> None:
        self.stage = stage
        self.dead_letter_topic = topics.dead_letter(source)
        self.retry_topics = frozenset(topics.retries(source))
        for counter in (PROCESSED, FAILED, RETRIED, DEAD_LETTERED):
            counter.labels(stage)  # shown at 0 from the start, not from the first of each

    def committed(
        self, *, records: int, outgoing: Sequence[Outgoing], failed: int, seconds: float
    ) -> None:
        PROCESSED.labels(self.stage).inc(records)
        BATCH_SIZE.labels(self.stage).observe(records)
        HANDLER_SECONDS.labels(self.stage).observe(seconds)
        retried = sum(1 for item in outgoing if item.topic in self.retry_topics)
        dead = sum(1 for item in outgoing if item.topic == self.dead_letter_topic)
        for counter, count in ((RETRIED, retried), (DEAD_LETTERED, dead), (FAILED, failed)):
            if count:
                counter.labels(self.stage).inc(count)


def serve(port: int, *, host: str) -> None:
    """Serve /metrics on `port` from a daemon thread; 0 serves nothing."""
    if port:
        start_http_server(port, addr=host)
        log.info("metrics on http://%s:%d/metrics", host, port)
