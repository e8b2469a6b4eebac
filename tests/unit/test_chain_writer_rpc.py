"""The guarded provider on a port where nothing listens: failures open the breaker, and an
open breaker keeps requests from leaving at all."""

from __future__ import annotations

import pytest
import requests
from web3 import Web3

from anchorline.errors import Retryable
from anchorline.infra.ports import free_port
from anchorline_chain_writer.breaker import BreakerState, CircuitBreaker, CircuitOpen
from anchorline_chain_writer.ratelimit import TokenBucket
from anchorline_chain_writer.rpc import GuardedHTTPProvider


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def provider(clock: Clock, *, rate: float = 1e3, send_rate: float = 1e3) -> GuardedHTTPProvider:
    return GuardedHTTPProvider(
        f"http://127.0.0.1:{free_port()}",
        breaker=CircuitBreaker(failure_threshold=2, cooldown_s=5.0, clock=clock),
        calls=TokenBucket(rate, burst=1, clock=clock, sleep=clock.sleep),
        sends=TokenBucket(send_rate, burst=1, clock=clock, sleep=clock.sleep),
        timeout_s=1.0,
    )


def test_refused_connections_open_the_breaker_and_then_nothing_is_sent() -> None:
    clock = Clock()
    guarded = provider(clock)
    w3 = Web3(guarded)
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            w3.eth.get_block_number()
    assert guarded.breaker.state is BreakerState.OPEN
    assert guarded.requests_made == 2

    with pytest.raises(CircuitOpen) as raised:
        w3.eth.get_block_number()
    assert isinstance(raised.value, Retryable)
    assert guarded.requests_made == 2


def test_after_the_cooldown_one_probe_goes_out() -> None:
    clock = Clock()
    guarded = provider(clock)
    w3 = Web3(guarded)
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            w3.eth.get_block_number()
    clock.now += 5.0
    with pytest.raises(requests.ConnectionError):
        w3.eth.get_block_number()  # the probe fails: open again
    assert guarded.requests_made == 3
    assert guarded.breaker.state is BreakerState.OPEN


def test_requests_wait_for_the_rate_limit_and_sends_for_theirs_too() -> None:
    clock = Clock()
    guarded = provider(clock, rate=10.0, send_rate=0.5)
    w3 = Web3(guarded)
    guarded.breaker = CircuitBreaker(failure_threshold=100, clock=clock)
    for _ in range(3):
        with pytest.raises(requests.ConnectionError):
            w3.eth.get_block_number()
    assert clock.slept == pytest.approx(0.2)
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            w3.eth.send_raw_transaction(b"\x02")
    assert clock.slept == pytest.approx(0.2 + 0.1 + 0.1 + 1.9)  # calls, calls, calls + send
