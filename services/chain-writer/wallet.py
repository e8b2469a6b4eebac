"""The hot wallet's transactions: explicit EIP-1559 fees, local nonces, stuck ones replaced."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from eth_account import Account
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3RPCError
from web3.types import TxReceipt

from anchorline.errors import Retryable
from anchorline_chain_writer import metrics
from anchorline_chain_writer.fees import FeePolicy, FeeQuote, Fees, quote_from_history
from anchorline_chain_writer.nonces import NonceManager

log = logging.getLogger(__name__)

NONCE_ATTEMPTS = 3


class Broadcast(Enum):
    """What the node made of a signed transaction."""

    SENT = "sent"
    KNOWN = "already known"  # the node holds this very transaction already
    NONCE_TOO_LOW = "nonce too low"  # a transaction with this nonce is mined
    UNDERPRICED = "replacement underpriced"  # another one with this nonce waits and pays more


def rejection(exc: Web3RPCError) -> Broadcast | None:
    """The Broadcast a node's error message means, or None for any other error."""
    message = str(exc).lower()
    if "already known" in message or "already imported" in message:
        return Broadcast.KNOWN
    if "nonce too low" in message:
        return Broadcast.NONCE_TOO_LOW
    if "replacement transaction underpriced" in message:
        return Broadcast.UNDERPRICED
    return None


@dataclass
class Pending:
    """A transaction of the wallet not seen mined yet, with every version sent under its nonce."""

    call: dict[str, Any]
    nonce: int
    fees: Fees
    raw: bytes
    hashes: list[bytes] = field(default_factory=list)
    sent_at: float = 0.0
    counted: bool = False  # its gas is in the metrics: waited for again, it is not counted twice

    @property
    def tx_hash(self) -> str:
        return "0x" + self.hashes[-1].hex()


class HotWallet:
    """Sends from one account: fees from eth_feeHistory under a cap, nonces counted locally, a
    transaction not mined after `stuck_after_s` replaced (same nonce, higher fees)."""

    def __init__(
        self,
        w3: Web3,
        private_key: str,
        *,
        fees: FeePolicy | None = None,
        stuck_after_s: float = 60.0,
        poll_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.w3 = w3
        self.account = Account.from_key(private_key)
        self.fees = fees or FeePolicy()
        self.stuck_after_s = stuck_after_s
        self.poll_s = poll_s
        self._clock = clock
        self._sleep = sleep
        self.nonces = NonceManager(lambda: self._count("pending"))

    @property
    def address(self) -> str:
        return str(self.account.address)

    def quote(self) -> FeeQuote:
        history = self.w3.eth.fee_history(
            self.fees.history_blocks, "latest", [self.fees.reward_percentile]
        )
        return quote_from_history(history, min_tip=self.fees.min_tip)

    def sign_new(self, call: dict[str, Any]) -> Pending:
        """A new transaction (`to`, `data`, `gas`, `chainId`) at today's fees and the next nonce."""
        fees = self.fees.offer(self.quote())
        self.nonces.check_sent()
        nonce = self.nonces.allocate()
        raw, tx_hash = self._sign(call, nonce, fees)
        return Pending(call=call, nonce=nonce, fees=fees, raw=raw, hashes=[tx_hash])

    def submit(self, pending: Pending) -> None:
        """Send a new transaction, moving it to a fresh nonce if the node says its nonce is used."""
        for _ in range(NONCE_ATTEMPTS):
            try:
                outcome = self._broadcast(pending.raw)
            except Exception:
                self.nonces.resync()  # the node may or may not have it; ask before the next nonce
                raise
            if outcome in (Broadcast.SENT, Broadcast.KNOWN):
                pending.sent_at = self._clock()
                self.nonces.sent(pending.nonce)
                log.info("sent %s with nonce %d", pending.tx_hash, pending.nonce)
                return
            log.info("nonce %d is taken (%s); asking the node again", pending.nonce, outcome.value)
            self.nonces.resync()
            self._move(pending, self.nonces.allocate())
        raise Retryable(f"no free nonce for {self.address} after {NONCE_ATTEMPTS} tries")

    def rebroadcast(self, pending: Pending) -> None:
        """Send the newest version again, for a node that dropped it or a reorg that undid it."""
        if self._broadcast(pending.raw) is Broadcast.SENT:
            pending.sent_at = self._clock()

    def wait_mined(self, pending: Pending, *, deadline: float) -> TxReceipt | None:
        """The receipt of whichever version got mined, replacing the transaction while it is
        stuck. None when its nonce went to another transaction or lies beyond a gap, so that
        this one can never be mined; Retryable when `deadline` passes first."""
        while True:
            mined = self._count("latest")
            receipt = self._receipt(pending)
            if receipt is not None:
                if not pending.counted:
                    pending.counted = True
                    metrics.spent(receipt)
                return receipt
            if mined > pending.nonce or self._behind_a_gap(pending):
                log.warning("nonce %d of %s was lost; resyncing", pending.nonce, self.address)
                self.nonces.resync()
                return None
            if self._clock() >= deadline:
                raise Retryable(f"transaction {pending.tx_hash} not mined in time")
            if self._clock() - pending.sent_at >= self.stuck_after_s:
                self.replace(pending)
            self._sleep(self.poll_s)

    def replace(self, pending: Pending) -> None:
        """Offer more for a stuck transaction: the same call and nonce, bumped fees."""
        fees = self.fees.replacement(pending.fees, self.quote())
        pending.sent_at = self._clock()
        if fees is None:
            log.warning("%s is stuck but the fee cap forbids a replacement", pending.tx_hash)
            return
        raw, tx_hash = self._sign(pending.call, pending.nonce, fees)
        outcome = self._broadcast(raw)
        pending.fees = fees  # even if refused: the next bump starts from here
        if outcome in (Broadcast.SENT, Broadcast.KNOWN):
            log.info("replaced %s by 0x%s at %s", pending.tx_hash, tx_hash.hex(), fees)
            pending.raw = raw
            pending.hashes.append(tx_hash)

    def _behind_a_gap(self, pending: Pending) -> bool:
        # Only worth asking once the transaction looks stuck.
        if self._clock() - pending.sent_at < self.stuck_after_s:
            return False
        return self._count("pending") < pending.nonce

    def _move(self, pending: Pending, nonce: int) -> None:
        pending.nonce = nonce
        pending.raw, tx_hash = self._sign(pending.call, nonce, pending.fees)
        pending.hashes = [tx_hash]

    def _sign(self, call: dict[str, Any], nonce: int, fees: Fees) -> tuple[bytes, bytes]:
        signed = self.account.sign_transaction({**call, "nonce": nonce, **fees.as_tx()})
        return bytes(signed.raw_transaction), bytes(signed.hash)

    def _broadcast(self, raw: bytes) -> Broadcast:
        try:
            self.w3.eth.send_raw_transaction(raw)
        except Web3RPCError as exc:
            outcome = rejection(exc)
            if outcome is None:
                raise
            return outcome
        return Broadcast.SENT

    def _receipt(self, pending: Pending) -> TxReceipt | None:
        for tx_hash in reversed(pending.hashes):
            try:
                return self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except TransactionNotFound:
                continue
        return None

    def _count(self, block: str) -> int:
        return int(self.w3.eth.get_transaction_count(self.account.address, block))  # type: ignore[arg-type]
