"""The gateway's publisher, which the scheduler shares: see anchorline.stream.publisher."""

from anchorline.stream.publisher import (
    KafkaPublisher,
    MemoryPublisher,
    Publisher,
    Record,
    Unavailable,
)

__all__ = ["KafkaPublisher", "MemoryPublisher", "Publisher", "Record", "Unavailable"]
