"""A token bucket: a steady rate with room for a short burst."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# A sleep shorter than the clock's resolution would never refill the last sliver of a token.
EPSILON = 1e-9


class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` saved up; `take` waits for one."""

    def __init__(
        self,
        rate_per_s: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"a token bucket needs a positive rate, not {rate_per_s}")
        self.rate = rate_per_s
        self.capacity = max(1.0, rate_per_s if burst is None else burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Wait until a token is there and take it; return the seconds waited."""
        waited = 0.0
        with self._lock:
            while True:
                delay = self._delay()
                if delay <= 0:
                    self._tokens -= 1
                    return waited
                self._sleep(delay)
                waited += delay

    def try_take(self) -> bool:
        with self._lock:
            if self._delay() > 0:
                return False
            self._tokens -= 1
            return True

    def _delay(self) -> float:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return 0.0 if self._tokens >= 1 - EPSILON else (1 - self._tokens) / self.rate
