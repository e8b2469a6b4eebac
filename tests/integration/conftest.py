from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from anchorline.infra.kafka import KafkaBroker
from anchorline.settings import Settings
from anchorline.stream.kafka import ensure_topics


@pytest.fixture
def settings(kafka: KafkaBroker, tmp_path: Path) -> Settings:
    """Settings on the real broker, with topics of this test's own prefix."""
    configured = Settings(
        state_dir=tmp_path,
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}",
        partitions=2,
        retry_delays_s="0.2,0.4",
        batch_max_wait_s=0.5,
    )
    ensure_topics(configured)
    return configured


@pytest.fixture
def running() -> Iterator[Callable[[Callable[[threading.Event], None]], threading.Thread]]:
    """Start a service loop in a thread; every one is stopped (and joined) after the test."""
    started: list[tuple[threading.Event, threading.Thread]] = []

    def start(loop: Callable[[threading.Event], None]) -> threading.Thread:
        stop = threading.Event()
        thread = threading.Thread(target=loop, args=(stop,), daemon=True)
        thread.start()
        started.append((stop, thread))
        return thread

    yield start
    for stop, _ in started:
        stop.set()
    for _, thread in started:
        thread.join(30)
        assert not thread.is_alive(), "a service did not stop within 30 s of its stop signal"
