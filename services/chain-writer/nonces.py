"""Nonces of one hot wallet, handed out locally so that back-to-back sends never collide."""

from __future__ import annotations

import threading
from collections.abc import Callable


class NonceManager:
    """Starts from the node's pending transaction count and counts up locally.

    It asks the node again only after `resync`: when the node says a nonce is too low
    or already used, or when a reorg may have dropped transactions of the wallet.
    """

    def __init__(self, pending_count: Callable[[], int]) -> None:
        self._pending_count = pending_count
        self._next: int | None = None
        self._highest_sent: int | None = None
        self._lock = threading.Lock()

    def sent(self, nonce: int) -> None:
        """The node took a transaction with `nonce`."""
        with self._lock:
            self._highest_sent = max(nonce, self._highest_sent or 0)

    def check_sent(self) -> None:
        """Before a send: if the node no longer counts a transaction this wallet sent (a reorg
        dropped it), start again from the node's count, lest the next one wait behind a gap."""
        with self._lock:
            if self._highest_sent is None:
                return
            if self._pending_count() <= self._highest_sent:
                self._next = self._highest_sent = None

    def allocate(self) -> int:
        with self._lock:
            if self._next is None:
                self._next = self._pending_count()
            nonce = self._next
            self._next += 1
            return nonce

    def release(self, nonce: int) -> None:
        """Give back a nonce whose transaction never reached the node, if it was the last one."""
        with self._lock:
            if self._next is not None and nonce == self._next - 1:
                self._next = nonce

    def resync(self) -> None:
        with self._lock:
            self._next = self._highest_sent = None
