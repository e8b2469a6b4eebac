"""Consumer lag per partition, from librdkafka's own statistics (statistics.interval.ms).

Every consumer built by `kafka.consumer_config` reports its statistics to `LAG` from its own
poll(), so no other thread ever calls into a consumer (a scrape that asked a consumer for its
assignment waited seconds behind its poll).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import REGISTRY, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

STATS_INTERVAL_MS = 10_000
# A client that has not reported for this long has closed (or stopped polling): left out.
STALE_S = 3 * STATS_INTERVAL_MS / 1000

Lags = dict[tuple[str, int], int]


def partition_lags(statistics: dict[str, object]) -> Lags:
    """(topic, partition) → messages behind, of the partitions assigned to this client: the last
    stable offset (read_committed's end) less the next offset the application will get. A
    partition this group never read nor committed starts at its earliest offset
    (auto.offset.reset), once librdkafka has fetched from it: an empty one is 0 behind, not
    left out."""
    lags: Lags = {}
    topics = statistics.get("topics")
    for topic, about in (topics if isinstance(topics, dict) else {}).items():
        for number, partition in (about.get("partitions") or {}).items():
            if int(number) < 0 or not partition.get("desired"):
                continue
            end = partition.get("ls_offset", -1)
            position = partition.get("app_offset", -1)
            if position < 0:
                position = partition.get("committed_offset", -1)
            if position < 0 and partition.get("fetch_state") == "active":
                position = partition.get("lo_offset", -1)
            if end >= 0 and position >= 0:
                lags[(topic, int(number))] = max(0, end - position)
    return lags


class ConsumerLag(Collector):
    """The latest lags each consumer client reported, as `anchorline_consumer_lag`."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._reports: dict[str, tuple[str, float, Lags]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def reporter(self, group: str) -> Callable[[str], None]:
        """A confluent-kafka `stats_cb` for a consumer of `group`."""

        def report(raw: str) -> None:
            statistics = json.loads(raw)
            client = str(statistics.get("name", ""))
            with self._lock:
                self._reports[client] = (group, self._clock(), partition_lags(statistics))

        return report

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "anchorline_consumer_lag",
            "Messages behind the end of each partition a consumer group member holds "
            "(offsets: a transaction's commit marker counts one).",
            labels=["group", "topic", "partition"],
        )
        now = self._clock()
        with self._lock:
            reports = [
                (group, lags) for group, at, lags in self._reports.values() if now - at < STALE_S
            ]
        for group, lags in reports:
            for (topic, partition), lag in sorted(lags.items()):
                family.add_metric([group, topic, str(partition)], lag)
        yield family


LAG = ConsumerLag()
REGISTRY.register(LAG)
