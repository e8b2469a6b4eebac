"""Taking a batch from a consumer without waiting for the batch to fill."""

from __future__ import annotations

from confluent_kafka import Consumer, Message


def take(consumer: Consumer, *, limit: int, timeout: float) -> list[Message]:
    """Up to `limit` messages: waits up to `timeout` for the first, then takes only what has
    arrived already. `consume(limit, timeout)` returns early only with a full batch, which put
    its whole timeout on the latency of every message when fewer than `limit` were waiting."""
    first = consumer.consume(num_messages=1, timeout=timeout)
    if not first or limit <= 1:
        return list(first)
    return [*first, *consumer.consume(num_messages=limit - 1, timeout=0)]
