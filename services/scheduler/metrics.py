"""The scheduler's own metrics."""

from __future__ import annotations

from prometheus_client import Counter

FIRED = Counter("anchorline_scheduler_fired", "Occurrences the scheduler claimed and recorded.")
PUBLISHED = Counter(
    "anchorline_scheduler_published", "Occurrences whose job Kafka acknowledged (a retry counts)."
)
UNPUBLISHED = Counter(
    "anchorline_scheduler_publish_failed",
    "Occurrences Kafka did not take: published again once their lease runs out.",
)
