from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
import weakref
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from anchorline.settings import Settings
from anchorline.stream.exactly_once import ExactlyOnce
from anchorline.stream.watchdog import EXIT_HUNG, Watchdog


class Expiries:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []
        self.fired = threading.Event()

    def __call__(self, what: str, waited_s: float) -> None:
        self.seen.append((what, waited_s))
        self.fired.set()


def test_a_call_that_outlives_its_deadline_expires_once() -> None:
    expiries = Expiries()
    watchdog = Watchdog(0.2, on_expiry=expiries, check_every_s=0.02)
    with watchdog.guard("stuck call"):
        assert expiries.fired.wait(2)
        time.sleep(0.3)  # still inside: it must not fire again
    assert [what for what, _ in expiries.seen] == ["stuck call"]
    assert expiries.seen[0][1] >= 0.2


def test_calls_that_return_in_time_never_expire() -> None:
    expiries = Expiries()
    watchdog = Watchdog(0.3, on_expiry=expiries, check_every_s=0.02)
    for _ in range(20):
        with watchdog.guard("quick call"):
            time.sleep(0.02)
    time.sleep(0.5)
    assert expiries.seen == []


def test_each_thread_has_its_own_deadline() -> None:
    expiries = Expiries()
    watchdog = Watchdog(0.3, on_expiry=expiries, check_every_s=0.02)
    release = threading.Event()

    def stuck() -> None:
        with watchdog.guard("stuck thread"):
            release.wait(5)

    thread = threading.Thread(target=stuck)
    thread.start()
    with watchdog.guard("quick call"):  # returns in time while the other is stuck
        time.sleep(0.05)
    assert expiries.fired.wait(2)
    release.set()
    thread.join()
    assert [what for what, _ in expiries.seen] == ["stuck thread"]


def test_a_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Watchdog(0)


def test_by_default_a_hung_call_ends_the_process_with_the_stacks() -> None:
    script = (
        "import time\n"
        "from anchorline.stream.watchdog import Watchdog\n"
        "with Watchdog(0.3).guard('a blocked librdkafka call'):\n"
        "    time.sleep(30)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == EXIT_HUNG
    assert time.monotonic() - started < 10
    assert "a blocked librdkafka call has blocked" in done.stderr
    assert "time.sleep" in done.stderr or "line 4" in done.stderr  # the stack dump


class BlockingProducer:
    """Stands in for librdkafka when send_offsets_to_transaction ignores its timeout."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append("produce")

    def send_offsets_to_transaction(self, *args: Any) -> None:
        self.calls.append("send_offsets")
        self.release.wait(10)

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")


def test_a_commit_that_blocks_in_librdkafka_is_cut_short_by_the_watchdog() -> None:
    expiries = Expiries()
    loop = ExactlyOnce(
        Settings(kafka_bootstrap="127.0.0.1:1"),
        group_id="g",
        service="test",
        watchdog=Watchdog(0.3, on_expiry=expiries, check_every_s=0.02),
    )
    producer = BlockingProducer()
    loop.producer = producer  # type: ignore[assignment]
    committer = threading.Thread(target=loop.commit, args=([], []))
    committer.start()
    assert expiries.fired.wait(3), "the watchdog did not see the blocked commit"
    producer.release.set()
    committer.join(5)
    assert [what for what, _ in expiries.seen] == ["committing a transaction"]
    assert producer.calls == ["begin", "send_offsets", "commit"]
    loop.close()


class FlakyProducer(BlockingProducer):
    """commit_transaction times out twice (retriable), then succeeds."""

    def __init__(self) -> None:
        super().__init__()
        self.release.set()
        self.failures = 2

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")
        if self.failures:
            self.failures -= 1
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True))


def test_a_retriable_commit_error_is_retried_not_raised() -> None:
    loop = ExactlyOnce(Settings(kafka_bootstrap="127.0.0.1:1"), group_id="g", service="test")
    producer = FlakyProducer()
    loop.producer = producer  # type: ignore[assignment]
    assert loop.commit([], []) is True
    assert producer.calls == ["begin", "send_offsets", "commit", "commit", "commit"]
    loop.close()


class AbortingProducer(BlockingProducer):
    """The broker aborts the transaction at commit (an abortable error)."""

    def __init__(self) -> None:
        super().__init__()
        self.release.set()

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")
        raise KafkaException(KafkaError(KafkaError._STATE, "aborted", txn_requires_abort=True))

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")

    def purge(self) -> None:
        self.calls.append("purge")

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init")


class Placed:
    """The parts of a consumed message that a rewind reads."""

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._place = (topic, partition, offset)

    def topic(self) -> str:
        return self._place[0]

    def partition(self) -> int:
        return self._place[1]

    def offset(self) -> int:
        return self._place[2]


def test_an_aborted_batch_on_a_partition_no_longer_ours_is_left_to_its_next_owner() -> None:
    loop = ExactlyOnce(Settings(kafka_bootstrap="127.0.0.1:1"), group_id="g", service="test")
    producer, replacement = AbortingProducer(), AbortingProducer()
    loop.producer = producer  # type: ignore[assignment]
    loop._new_producer = lambda: replacement  # type: ignore[assignment,method-assign,return-value]
    batch = [Placed("t", 0, 5), Placed("t", 0, 6)]  # the consumer is assigned nothing
    assert loop.commit(batch, []) is False  # type: ignore[arg-type]
    assert producer.calls == ["begin", "send_offsets", "commit", "abort", "purge"]
    assert loop.producer is replacement and replacement.calls == ["init"]
    loop.close()


def test_closing_a_loop_ends_its_watchdog_and_lets_the_loop_go() -> None:
    loop = ExactlyOnce(Settings(kafka_bootstrap="127.0.0.1:1"), group_id="g", service="test")
    producer = FlakyProducer()
    producer.failures = 0
    loop.producer = producer  # type: ignore[assignment]
    assert loop.commit([], []) is True
    watchdog = loop.watchdog
    assert watchdog.watching
    gone = weakref.ref(loop)
    loop.close()
    assert not watchdog.watching
    del loop, producer, watchdog
    gc.collect()
    assert gone() is None, "a closed loop (and its producer) is still held by its watchdog"
