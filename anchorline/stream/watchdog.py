"""A deadline for calls that can block past their own timeout: the process exits instead.

librdkafka's `send_offsets_to_transaction()` can block for good while the broker's group
coordinator is away, whatever timeout it was given (confluentinc/librdkafka#5456, #5511).
Python cannot interrupt a thread blocked in C, and a stage that stays alive but never commits
holds its partitions and, through its open transaction, every read_committed reader behind it.
So a guarded call that outlives its deadline ends the process: whatever supervises it
(`anchorline up`, systemd, Kubernetes) starts a new one, and the broker aborts the old
transaction after `transaction.timeout.ms`. Nothing is lost: the batch's offsets were not
committed, so the new process reads the batch again.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

log = logging.getLogger(__name__)

# EX_SOFTWARE from sysexits.h: the supervisor sees a crash and restarts the process.
EXIT_HUNG = 70

Expiry = Callable[[str, float], None]


def exit_hung(what: str, waited_s: float) -> None:
    """The default expiry: say where every thread is, then end the process at once."""
    log.critical(
        "%s has blocked for %.0f s; exiting so that a new process takes over", what, waited_s
    )
    _flush_logs()
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    os._exit(EXIT_HUNG)


def exit_left_group(service: str) -> None:
    """A consumer that exceeded max.poll.interval.ms has left its group and lost its
    partitions; its batch in hand cannot commit. End the process so a new one takes over."""
    exit_to_restart(service, "its consumer left its group (max.poll.interval.ms exceeded)")


def exit_to_restart(service: str, why: str) -> NoReturn:
    """A state this process cannot safely go on from (a transaction's outcome unknown, its
    partitions lost): end it, so that a new one takes over from what the broker committed."""
    log.critical("%s: %s; exiting so that a new process takes over", service, why)
    _flush_logs()
    os._exit(EXIT_HUNG)


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


class Watchdog:
    """Runs `on_expiry(what, waited_s)` when a call guarded by `guard()` outlives `deadline_s`.

    One daemon thread per watchdog, started on the first guard; a guard costs two dict updates.
    """

    def __init__(
        self, deadline_s: float, *, on_expiry: Expiry = exit_hung, check_every_s: float = 0.5
    ) -> None:
        if deadline_s <= 0:
            raise ValueError("a watchdog's deadline must be positive")
        self.deadline_s = deadline_s
        self.on_expiry = on_expiry
        self.check_every_s = min(check_every_s, deadline_s / 4)
        self._armed: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        token = threading.get_ident()
        with self._lock:
            self._armed[token] = (what, time.monotonic())
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._armed.pop(token, None)

    def stop(self) -> None:
        """End the watching thread (within `check_every_s`); guards after this are not watched."""
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.check_every_s * 4)

    @property
    def watching(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _watch(self) -> None:
        while not self._stopped.wait(self.check_every_s):
            now = time.monotonic()
            with self._lock:
                late = [
                    (token, what, now - since)
                    for token, (what, since) in self._armed.items()
                    if now - since > self.deadline_s
                ]
                for token, _, _ in late:
                    del self._armed[token]  # expire once
            for _, what, waited in late:
                self.on_expiry(what, waited)
