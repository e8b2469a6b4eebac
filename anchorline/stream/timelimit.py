"""A time limit on one handler call, below the watchdog that ends a hung process.

The call runs on a daemon thread of the limiter's own while the caller waits for it at most
the limit. Python cannot stop a thread, so a call past its limit is left to finish alone (its
result dropped) and a new thread takes the next call: the record fails with StageTimeout
(retryable) and the stage carries on. A call blocked in C for good keeps its thread, which
is daemonic and so never holds the process up when it exits.

`call_each` hands a whole sequence of calls over at once, each still under its own limit: one
hand-over a call cost about 40 µs of CPU in thread switches (measured), a tenth of a verify job.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from anchorline.errors import Retryable

T = TypeVar("T")


class StageTimeout(Retryable):
    """The handler ran past the stage's time limit: tried again later, like any transient
    failure, and dead-lettered once its attempts run out."""


DEFERRED = object()  # call_each's outcome for a call not begun: its batch's time was up


class _Each:
    """Calls run in turn on the worker: when each began and what each gave (True, value) or
    (False, exception), until they are done, the batch's time is up or the caller gives up."""

    def __init__(self, calls: Sequence[Callable[[], Any]], ends: float) -> None:
        self.calls, self.ends = calls, ends
        self.starts: list[float] = []
        self.outcomes: list[tuple[bool, Any]] = []
        self.done = self.abandoned = False
        self.changed = threading.Condition()

    def __call__(self) -> None:
        for call in self.calls:
            with self.changed:
                now = time.monotonic()
                if self.abandoned or now >= self.ends:
                    break
                self.starts.append(now)
            try:
                outcome: tuple[bool, Any] = (True, call())
            except BaseException as exc:  # handed back to the caller, whatever it is
                outcome = (False, exc)
            with self.changed:
                if self.abandoned:
                    return
                self.outcomes.append(outcome)
        with self.changed:
            self.done = True
            self.changed.notify_all()


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

    def call_each(
        self, calls: Sequence[Callable[[], T]], *, limit_s: float, ends: float, what: str
    ) -> list[T | BaseException | object]:
        """Each call's result, or the exception it raised, or StageTimeout if it ran past
        `limit_s` or past `ends` (a monotonic time: the batch's budget), or DEFERRED if `ends`
        came before it began. One hand-over to the worker for all of them; after a call that
        ran out of time, the rest go to a new worker."""
        if not calls:
            return []
        each = _Each(calls, ends)
        worker = self._worker = self._worker or _Worker()
        worker.calls.put((each, Future()))
        late: float | None = None
        with each.changed:
            while not each.done:
                index, now = len(each.outcomes), time.monotonic()
                # The next call begins now or later, so its deadline is no sooner than this.
                wait = max(min(limit_s, ends - now), 0.001)
                if index < len(each.starts):  # a call in hand: it began at a known time
                    deadline = min(each.starts[index] + limit_s, ends)
                    wait = deadline - now
                    if wait <= 0:
                        each.abandoned = True
                        late = deadline - each.starts[index]
                        break
                each.changed.wait(wait)
            outcomes: list[T | BaseException | object] = [value for _, value in each.outcomes]
        if late is None:
            return outcomes + [DEFERRED] * (len(calls) - len(outcomes))
        worker.retire()
        self._worker = None
        timeout = StageTimeout(f"{what} ran past its time limit of {max(late, 0):g} s")
        rest = calls[len(outcomes) + 1 :]
        return [*outcomes, timeout, *self.call_each(rest, limit_s=limit_s, ends=ends, what=what)]

    def close(self) -> None:
        if self._worker is not None:
            self._worker.retire()
            self._worker = None
