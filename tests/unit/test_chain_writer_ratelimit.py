from __future__ import annotations

import pytest

from anchorline_chain_writer.ratelimit import TokenBucket


class Clock:
    """A clock that only moves when something sleeps or the test advances it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def bucket(rate: float, clock: Clock, burst: float | None = None) -> TokenBucket:
    return TokenBucket(rate, burst=burst, clock=clock, sleep=clock.sleep)


def test_a_full_bucket_lets_a_burst_through_without_waiting() -> None:
    clock = Clock()
    limit = bucket(5, clock)
    assert [limit.take() for _ in range(5)] == [0.0] * 5
    assert clock.slept == []


def test_after_the_burst_takes_are_spaced_at_the_rate() -> None:
    clock = Clock()
    limit = bucket(4, clock, burst=1)
    start = clock.now
    for _ in range(9):
        limit.take()
    assert clock.now - start == pytest.approx(2.0)
    assert clock.slept == pytest.approx([0.25] * 8)


def test_tokens_refill_with_time_up_to_the_capacity() -> None:
    clock = Clock()
    limit = bucket(2, clock, burst=3)
    for _ in range(3):
        limit.take()
    assert not limit.try_take()
    clock.now += 0.5
    assert limit.try_take()
    assert not limit.try_take()
    clock.now += 60  # a long pause saves up no more than the burst
    assert [limit.try_take() for _ in range(4)] == [True, True, True, False]


def test_take_reports_how_long_it_waited() -> None:
    clock = Clock()
    limit = bucket(10, clock, burst=1)
    limit.take()
    assert limit.take() == pytest.approx(0.1)


def test_a_slow_rate_still_allows_one_call() -> None:
    clock = Clock()
    limit = bucket(0.5, clock)
    assert limit.capacity == 1
    assert limit.take() == 0.0
    assert limit.take() == pytest.approx(2.0)


@pytest.mark.parametrize("rate", [0, -1])
def test_a_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="positive rate"):
        TokenBucket(rate)
