"""A circuit breaker: after repeated failures, stop calling for a while, then try once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum

from anchorline.errors import Retryable

log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitOpen(Retryable):
    """The breaker refused the call without making it."""

    def __init__(self, name: str, retry_after_s: float) -> None:
        super().__init__(f"{name} circuit open; next try in {retry_after_s:.1f}s")
        self.retry_after_s = retry_after_s


class CircuitBreaker:
    """Closed: calls go through. After `failure_threshold` failures in a row it opens and
    refuses every call for `cooldown_s`; then it lets one probe through (half-open). The
    probe's success closes it, its failure opens it for another cool-down."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        name: str = "chain RPC",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {failure_threshold}")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.name = name
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    @property
    def failures(self) -> int:
        return self._failures

    def before_call(self) -> None:
        """Raise CircuitOpen unless a call may go out now."""
        with self._lock:
            state = self._state()
            if state is BreakerState.CLOSED:
                return
            if state is BreakerState.OPEN or self._probing:
                raise CircuitOpen(self.name, self._retry_after())
            self._probing = True

    def record_success(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                log.info("%s circuit closed", self.name)
            self._failures = 0
            self._opened_at = None
            self._probing = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            reopen = self._probing or self._opened_at is not None
            self._probing = False
            if reopen or self._failures >= self.failure_threshold:
                if self._opened_at is None:
                    log.warning("%s circuit open after %d failures", self.name, self._failures)
                self._opened_at = self._clock()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self._clock() - self._opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def _retry_after(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_s - self._clock())
