from __future__ import annotations

import os
from typing import Any

import pytest
from confluent_kafka import KafkaError

from anchorline.settings import Settings
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
