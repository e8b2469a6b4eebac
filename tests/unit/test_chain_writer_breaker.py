from __future__ import annotations

import pytest

from anchorline.errors import Retryable
from anchorline_chain_writer.breaker import BreakerState, CircuitBreaker, CircuitOpen


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, threshold: int = 3, cooldown: float = 10.0) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=threshold, cooldown_s=cooldown, clock=clock)


def fail(subject: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        subject.before_call()
        subject.record_failure()


def test_closed_lets_calls_through() -> None:
    subject = breaker(Clock())
    subject.before_call()
    subject.record_success()
    assert subject.state is BreakerState.CLOSED


def test_opens_after_the_threshold_of_consecutive_failures() -> None:
    subject = breaker(Clock(), threshold=3)
    fail(subject, 2)
    assert subject.state is BreakerState.CLOSED
    fail(subject, 1)
    assert subject.state is BreakerState.OPEN


def test_a_success_resets_the_count_of_failures() -> None:
    subject = breaker(Clock(), threshold=3)
    fail(subject, 2)
    subject.before_call()
    subject.record_success()
    fail(subject, 2)
    assert subject.state is BreakerState.CLOSED
    assert subject.failures == 2


def test_open_refuses_calls_with_a_retryable_error_saying_when_to_come_back() -> None:
    clock = Clock()
    subject = breaker(clock, threshold=1, cooldown=10)
    fail(subject, 1)
    clock.now += 4
    with pytest.raises(CircuitOpen, match=r"circuit open; next try in 6\.0s") as raised:
        subject.before_call()
    assert isinstance(raised.value, Retryable)
    assert raised.value.retry_after_s == pytest.approx(6.0)


def test_half_open_after_the_cooldown_lets_one_probe_through() -> None:
    clock = Clock()
    subject = breaker(clock, threshold=1, cooldown=10)
    fail(subject, 1)
    clock.now += 10
    assert subject.state is BreakerState.HALF_OPEN
    subject.before_call()  # the probe
    with pytest.raises(CircuitOpen):
        subject.before_call()  # a second caller while the probe is out
    assert subject.state is BreakerState.HALF_OPEN


def test_a_successful_probe_closes_the_breaker() -> None:
    clock = Clock()
    subject = breaker(clock, threshold=2, cooldown=10)
    fail(subject, 2)
    clock.now += 10
    subject.before_call()
    subject.record_success()
    assert subject.state is BreakerState.CLOSED
    assert subject.failures == 0
    fail(subject, 1)
    assert subject.state is BreakerState.CLOSED  # back to counting from zero


def test_a_failed_probe_opens_it_for_another_cooldown() -> None:
    clock = Clock()
    subject = breaker(clock, threshold=3, cooldown=10)
    fail(subject, 3)
    clock.now += 15
    fail(subject, 1)  # one failure is enough when half-open
    assert subject.state is BreakerState.OPEN
    clock.now += 9.9
    assert subject.state is BreakerState.OPEN
    clock.now += 0.1
    assert subject.state is BreakerState.HALF_OPEN


def test_a_threshold_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CircuitBreaker(failure_threshold=0)
