"""Messages, not offsets: a transaction's commit marker and an aborted record take offsets and
are no messages, so ranges of offsets are counted by reading them as a read_committed consumer.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from anchorline.settings import Settings
from anchorline.stream.access import READER_GROUPS
from anchorline.stream.kafka import client_config
from anchorline.stream.topic_reader import REFUSED

Place = tuple[str, int]
# Past this many messages of one partition (a backlog), the rest of its range is counted in
# offsets: an estimate high by the markers in it, marked as such.
MAX_COUNTED = 1000
COUNT_TIMEOUT_S = 3.0


def reader(settings: Settings) -> Consumer:
    """A consumer that reads committed messages only, in a group of topic_reader's kind (it
    commits nothing: the group is only what the broker asks a consumer to name)."""
    return Consumer(
        client_config(settings)
        | {
            "group.id": f"{READER_GROUPS}gateway-count",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "fetch.max.bytes": 4 << 20,
        }
    )


def count(
    consumer: Consumer,
    ranges: dict[Place, tuple[int, int]],
    *,
    most: int = MAX_COUNTED,
    timeout_s: float = COUNT_TIMEOUT_S,
) -> tuple[dict[Place, int], bool]:
    """Messages from each range's start up to (not at) its end, and whether every count is
    exact (else a range too long or too slow to read is counted in offsets from where the
    reading stopped)."""
    found = {place: 0 for place in ranges}
    open_ = {place: span for place, span in ranges.items() if span[1] > span[0]}
    if not open_:
        return found, True
    consumer.assign([TopicPartition(t, p, start) for (t, p), (start, _) in open_.items()])
    deadline = time.monotonic() + timeout_s
    try:
        while open_ and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=0.2):
                error = message.error()
                if error is not None and error.code() in REFUSED:
                    raise KafkaException(error)  # waiting would not change the broker's mind
                place = (message.topic() or "", message.partition() or 0)
                if error is None and place in open_:
                    found[place] += (message.offset() or 0) < open_[place][1]
            _close_done(consumer, open_, found, most)
        exact = not open_ and all(n < most for n in found.values())
        for place, position in _positions(consumer, open_).items():
            found[place] += max(0, open_[place][1] - position)  # left unread: in offsets
        return found, exact
    finally:
        consumer.unassign()


def _close_done(
    consumer: Consumer, open_: dict[Place, tuple[int, int]], found: dict[Place, int], most: int
) -> None:
    """Ranges read to their end (the position passes markers too) close; so do those past
    `most`, their rest added in offsets."""
    for place, position in _positions(consumer, open_).items():
        end = open_[place][1]
        if position >= end:
            del open_[place]
        elif found[place] >= most:
            found[place] += end - position
            del open_[place]


def _positions(consumer: Consumer, open_: dict[Place, tuple[int, int]]) -> dict[Place, int]:
    if not open_:
        return {}
    places = consumer.position([TopicPartition(t, p) for t, p in open_])
    return {
        (tp.topic, tp.partition): max(tp.offset, open_[(tp.topic, tp.partition)][0])
        for tp in places
    }
