"""A time limit on one handler call, below the watchdog that ends a hung process.

The call runs on a daemon thread of the limiter's own while the caller waits for it at most
the limit. Python cannot stop a thread, so a call past its limit is left to finish alone (its
result dropped) and a new thread takes the next call: the record fails with StageTimeout
(retryable) and the stage carries on. A call blocked in C for good keeps its thread, which
is daemonic and so never holds the process up when it exits.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from anchorline.errors import Retryable

T = TypeVar("T")


class StageTimeout(Retryable):
    """The handler ran past the stage's time limit: tried again later, like any transient
    failure, and dead-lettered once its attempts run out."""


class _Worker:
    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self.thread = threading.Thread(target=self._run, name="handler", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.calls.get()) is not None:
            call, future = item
            try:
                future.set_result(call())
            except BaseException as exc:  # handed back to the caller, whatever it is
                future.set_exception(exc)

    def submit(self, call: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self.calls.put((call, future))
        return future

    def retire(self) -> None:
        """Let the thread end once its current call does."""
        self.calls.put(None)


class TimeLimit:
    """Runs calls one at a time, each for at most a given number of seconds."""

    def __init__(self) -> None:
        self._worker: _Worker | None = None

    def call(self, work: Callable[[], T], *, limit_s: float, what: str) -> T:
        """`work()`'s result; StageTimeout if it has not returned within `limit_s`."""
        if limit_s <= 0:
            raise StageTimeout(f"{what}: no time left in this batch")
        worker = self._worker = self._worker or _Worker()
        future = worker.submit(work)
        try:
            return future.result(timeout=limit_s)
        except TimeoutError:
            worker.retire()
            self._worker = None
            raise StageTimeout(f"{what} ran past its time limit of {limit_s:g} s") from None

    def close(self) -> None:
        if self._worker is not None:
            self._worker.retire()
            self._worker = None
