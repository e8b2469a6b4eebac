from __future__ import annotations

import os
from typing import Any, ClassVar

import pytest
from confluent_kafka import KafkaError, KafkaException

from anchorline.settings import Settings
from anchorline.stream import exactly_once
from anchorline.stream.exactly_once import ExactlyOnce
from anchorline.stream.watchdog import EXIT_HUNG


class ErrorOnly:
    """What librdkafka hands the application: an event that carries only an error."""

    def __init__(self, code: int) -> None:
        self.code = code

    def error(self) -> KafkaError:
        return KafkaError(self.code)


class OneEventConsumer:
    def __init__(self, code: int) -> None:
        self.code = code

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        return [ErrorOnly(self.code)]

    def close(self) -> None:
        pass


def exits(code: int) -> None:
    raise SystemExit(code)


def loop_seeing(code: int) -> ExactlyOnce:
    loop = ExactlyOnce(Settings(kafka_bootstrap="127.0.0.1:1"), group_id="g", service="verifier")
    loop.consumer.close()
    loop.consumer = OneEventConsumer(code)  # type: ignore[assignment]
    return loop


def test_a_consumer_that_left_its_group_ends_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "_exit", exits)
    loop = loop_seeing(KafkaError._MAX_POLL_EXCEEDED)
    with pytest.raises(SystemExit) as exited:
        loop.poll(limit=10, timeout=0.1)
    assert exited.value.code == EXIT_HUNG


def test_other_consumer_errors_are_logged_and_polling_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "_exit", exits)
    assert loop_seeing(KafkaError._TRANSPORT).poll(limit=10, timeout=0.1) == []


class Record:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class SeekingConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []

    def consumer_group_metadata(self) -> object:
        return object()

    def seek(self, place: Any) -> None:
        self.seeks.append((place.topic, place.partition, place.offset))

    def close(self) -> None:
        pass


class FailingProducer:
    """A producer whose commit fails as `on_commit` says, and whose abort fails as `on_abort`."""

    def __init__(self, on_commit: KafkaError, on_abort: KafkaError | None = None) -> None:
        self.on_commit, self.on_abort = on_commit, on_abort
        self.aborts = 0

    def begin_transaction(self) -> None:
        pass

    def produce(self, *args: Any, **kwargs: Any) -> None:
        pass

    def send_offsets_to_transaction(self, *args: Any) -> None:
        pass

    def commit_transaction(self, *args: Any) -> None:
        raise KafkaException(self.on_commit)

    def abort_transaction(self, *args: Any) -> None:
        self.aborts += 1
        if self.on_abort is not None:
            raise KafkaException(self.on_abort)

    def purge(self) -> None:
        pass


class NewProducer:
    def __init__(self) -> None:
        self.initialised = False

    def init_transactions(self, *args: Any) -> None:
        self.initialised = True


ABORTABLE = KafkaError(KafkaError._TIMED_OUT, "timed out", txn_requires_abort=True)
FENCED = KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True)
LOST_STATE = KafkaError(KafkaError.INVALID_TXN_STATE, "invalid transaction state", fatal=True)


def loop_with(producer: FailingProducer, monkeypatch: pytest.MonkeyPatch) -> ExactlyOnce:
    loop = ExactlyOnce(Settings(kafka_bootstrap="127.0.0.1:1"), group_id="g", service="prover")
    loop.consumer.close()
    loop.consumer = SeekingConsumer()  # type: ignore[assignment]
    loop.producer = producer  # type: ignore[assignment]
    monkeypatch.setattr(loop, "_new_producer", NewProducer)
    return loop


@pytest.mark.parametrize(
    ("on_commit", "on_abort"),
    [
        (ABORTABLE, None),  # aborted: a new epoch fences the aborted transaction's late writes
        (FENCED, None),  # fenced at commit
        (ABORTABLE, FENCED),  # fenced while aborting (the broker came back)
        (ABORTABLE, LOST_STATE),  # the broker came back without the transaction
    ],
    ids=["abortable", "fenced", "fenced-while-aborting", "invalid-state-while-aborting"],
)
def test_a_failed_commit_rewinds_the_batch_and_a_new_producer_runs_it_again(
    on_commit: KafkaError, on_abort: KafkaError | None, monkeypatch
) -> None:
    failing = FailingProducer(on_commit, on_abort)
    loop = loop_with(failing, monkeypatch)
    try:
        assert loop.commit([Record(7), Record(8)], []) is False
        assert loop.consumer.seeks == [("t", 0, 7)]  # type: ignore[attr-defined]
        assert loop.producer is not failing
        assert loop.producer.initialised  # type: ignore[attr-defined]
        assert failing.aborts == (0 if on_commit is FENCED else 1)
    finally:
        loop.watchdog.stop()


class RecordedProducer:
    configs: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        RecordedProducer.configs.append(config)

    def init_transactions(self, *args: Any) -> None:
        pass

    def purge(self) -> None:
        pass


def test_the_new_producer_keeps_the_transactional_id_so_its_epoch_fences_the_old_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exactly_once, "Producer", RecordedProducer)
    monkeypatch.setattr(RecordedProducer, "configs", [])
    loop = ExactlyOnce(Settings(kafka_bootstrap="127.0.0.1:1"), group_id="g", service="prover")
    try:
        loop._replace_producer()
        first, second = (config["transactional.id"] for config in RecordedProducer.configs)
        assert first == second and first.startswith("anchorline-prover-")
    finally:
        loop.consumer.close()
        loop.watchdog.stop()


@pytest.mark.parametrize(
    ("on_commit", "on_abort"),
    [
        # the commit's outcome unknown: only a new process reading the committed offsets is safe
        (KafkaError(KafkaError._STATE, "not in a transaction", fatal=True), None),
        (KafkaError(KafkaError._TRANSPORT, "broker went away"), None),
        # aborting failed without ending the producer: its state unknown
        (ABORTABLE, KafkaError(KafkaError._STATE, "erroneous state")),
    ],
    ids=["fatal-commit", "other-commit", "abort-failed"],
)
def test_a_transaction_in_an_unknown_state_ends_the_process_to_be_restarted(
    on_commit: KafkaError, on_abort: KafkaError | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "_exit", exits)
    loop = loop_with(FailingProducer(on_commit, on_abort), monkeypatch)
    try:
        with pytest.raises(SystemExit) as exited:
            loop.commit([Record(1)], [])
        assert exited.value.code == EXIT_HUNG
    finally:
        loop.watchdog.stop()
