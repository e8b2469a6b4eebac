"""The registry contract on an EVM chain: the port, the web3 adapter and an in-memory twin."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol

import requests
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import BlockNotFound, ContractLogicError, TimeExhausted, Web3Exception

from anchorline.errors import Permanent, Retryable
from anchorline.proof.registry import load_artifact
from anchorline_chain_writer.breaker import CircuitBreaker
from anchorline_chain_writer.fees import FeePolicy
from anchorline_chain_writer.ratelimit import TokenBucket
from anchorline_chain_writer.rpc import GuardedHTTPProvider
from anchorline_chain_writer.wallet import HotWallet, Pending

log = logging.getLogger(__name__)

GAS_MARGIN_PERCENT = 25
NOT_WRITER = "0x" + keccak(b"NotWriter(address)")[:4].hex()  # the registry's revert selector


@dataclass(frozen=True)
class AnchorReceipt:
    """Where a root sits on chain."""

    chain_id: int
    contract: str
    root: str
    tx_hash: str
    block_number: int
    block_hash: str
    confirmations: int

    def as_result(self) -> dict[str, Any]:
        return {
            "chainId": self.chain_id,
            "contract": self.contract,
            "root": self.root,
            "txHash": self.tx_hash,
            "blockNumber": self.block_number,
            "blockHash": self.block_hash,
            "confirmations": self.confirmations,
        }


class RegistryChain(Protocol):
    """Anchoring roots in the registry contract."""

    def find_anchor(self, root: bytes) -> AnchorReceipt | None:
        """Where the current chain has `root` anchored, or None."""

    def anchor(self, root: bytes) -> AnchorReceipt:
        """Send the anchoring transaction (or resume the one in flight) until it is mined."""

    def confirm(self, receipt: AnchorReceipt) -> AnchorReceipt | None:
        """Wait until the receipt's block is deep enough and still canonical; None if a reorg
        took it out of the chain."""


TRANSIENT = (requests.RequestException, TimeExhausted, OSError, TimeoutError)


@contextmanager
def rpc_errors() -> Iterator[None]:
    """A node that does not answer is a transient failure; so is one that answers an error."""
    try:
        yield
    except TRANSIENT as exc:
        raise Retryable(f"chain RPC unavailable: {exc}") from exc
    except ContractLogicError:
        raise
    except Web3Exception as exc:
        raise Retryable(f"chain RPC failed: {exc}") from exc


class Web3Registry:
    """The registry contract through a JSON-RPC endpoint, sending from one hot wallet.

    Every RPC call keeps to a rate limit and passes a circuit breaker; the wallet prices
    transactions itself (EIP-1559), counts nonces locally and replaces stuck transactions.
    A transaction sent for a root is remembered until its anchor is confirmed, so a retry
    or a reorg resumes it (same nonce) rather than sending a second one.
    """

    def __init__(
        self,
        rpc_url: str,
        address: str,
        private_key: str,
        *,
        confirmations: int = 1,
        tx_timeout_s: float = 120.0,
        stuck_after_s: float = 60.0,
        poll_s: float = 0.5,
        fees: FeePolicy | None = None,
        breaker: CircuitBreaker | None = None,
        rpc_rate_per_s: float = 25.0,
        send_rate_per_s: float = 2.0,
        rpc_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.breaker = breaker or CircuitBreaker(clock=clock)
        self.provider = GuardedHTTPProvider(
            rpc_url,
            breaker=self.breaker,
            calls=TokenBucket(rpc_rate_per_s, clock=clock, sleep=sleep),
            sends=TokenBucket(send_rate_per_s, clock=clock, sleep=sleep),
            timeout_s=rpc_timeout_s,
        )
        self.w3 = Web3(self.provider)
        self.contract = self.w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=load_artifact().abi
        )
        self.wallet = HotWallet(
            self.w3,
            private_key,
            fees=fees,
            stuck_after_s=stuck_after_s,
            poll_s=poll_s,
            clock=clock,
            sleep=sleep,
        )
        self.confirmations = confirmations
        self.tx_timeout_s = tx_timeout_s
        self.poll_s = poll_s
        self._clock = clock
        self._sleep = sleep
        self._chain_id: int | None = None
        self.in_flight: dict[bytes, Pending] = {}

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def find_anchor(self, root: bytes) -> AnchorReceipt | None:
        with rpc_errors():
            block = int(self.contract.functions.anchoredAt(root).call())
            if block == 0:
                return None
            logs = self.contract.events.Anchored().get_logs(
                argument_filters={"root": root}, from_block=block, to_block=block
            )
            if not logs:
                raise Retryable(f"root 0x{root.hex()} anchored in block {block} but no log there")
            log_entry = logs[0]
            return self._receipt(root, log_entry["transactionHash"], block, log_entry["blockHash"])

    def anchor(self, root: bytes) -> AnchorReceipt:
        deadline = self._clock() + self.tx_timeout_s
        try:
            with rpc_errors():
                return self._anchor(root, deadline)
        except ContractLogicError as exc:
            self.in_flight.pop(root, None)
            found = self.find_anchor(root)
            if found is not None:
                return found
            if NOT_WRITER in str(exc):
                raise Permanent(
                    f"{self.wallet.account.address} is not a writer of the registry "
                    f"{self.contract.address} (its owner allows one with setWriter)"
                ) from exc
            raise Permanent(f"registry rejected root 0x{root.hex()}: {exc}") from exc

    def confirm(self, receipt: AnchorReceipt) -> AnchorReceipt | None:
        deadline = self._clock() + self.tx_timeout_s
        with rpc_errors():
            while True:
                head = int(self.w3.eth.block_number)
                if self._canonical_hash(receipt.block_number) != receipt.block_hash:
                    log.warning(
                        "block %d (%s) of root %s left the chain",
                        receipt.block_number,
                        receipt.block_hash,
                        receipt.root,
                    )
                    self.wallet.nonces.resync()  # the reorg may have undone our transactions
                    return None
                depth = head - receipt.block_number + 1
                if depth >= self.confirmations:
                    self.in_flight.pop(bytes.fromhex(receipt.root[2:]), None)
                    return replace(receipt, confirmations=depth)
                if self._clock() >= deadline:
                    raise Retryable(f"block {receipt.block_number} not {self.confirmations} deep")
                self._sleep(self.poll_s)

    def _anchor(self, root: bytes, deadline: float) -> AnchorReceipt:
        pending = self.in_flight.get(root)
        if pending is not None:
            self.wallet.rebroadcast(pending)
        else:
            pending = self._send(root)
        receipt = self.wallet.wait_mined(pending, deadline=deadline)
        if receipt is None:  # its nonce went to another transaction
            del self.in_flight[root]
            found = self.find_anchor(root)
            if found is not None:
                return found
            pending = self._send(root)
            receipt = self.wallet.wait_mined(pending, deadline=deadline)
        if receipt is None or receipt["status"] != 1:
            self.in_flight.pop(root, None)
            found = self.find_anchor(root)
            if found is not None:
                return found
            raise Retryable(f"anchor transaction {pending.tx_hash} for 0x{root.hex()} failed")
        return self._receipt(
            root, receipt["transactionHash"], receipt["blockNumber"], receipt["blockHash"]
        )

    def _send(self, root: bytes) -> Pending:
        data = self.contract.encode_abi("anchor", args=[root])
        estimate = self.w3.eth.estimate_gas(
            {"from": self.wallet.account.address, "to": self.contract.address, "data": data}
        )
        call = {
            "type": 2,
            "chainId": self.chain_id,
            "to": self.contract.address,
            "data": data,
            "value": 0,
            "gas": estimate * (100 + GAS_MARGIN_PERCENT) // 100,
        }
        pending = self.in_flight[root] = self.wallet.sign_new(call)
        self.wallet.submit(pending)
        return pending

    def canonical_hash(self, number: int) -> str | None:
        """The hash of the canonical block `number`, or None where the chain has none."""
        with rpc_errors():
            return self._canonical_hash(number)

    def _canonical_hash(self, number: int) -> str | None:
        try:
            return "0x" + bytes(self.w3.eth.get_block(number)["hash"]).hex()
        except BlockNotFound:
            return None

    def _receipt(self, root: bytes, tx_hash: bytes, block: int, block_hash: bytes) -> AnchorReceipt:
        depth = max(0, int(self.w3.eth.block_number) - block + 1)
        return AnchorReceipt(
            chain_id=self.chain_id,
            contract=self.contract.address,
            root="0x" + root.hex(),
            tx_hash="0x" + bytes(tx_hash).hex(),
            block_number=block,
            block_hash="0x" + bytes(block_hash).hex(),
            confirmations=depth,
        )


class MemoryRegistry:
    """A chain in a dict, for unit tests: one block per anchor.

    `failures_left` simulates an outage; `reorgs_left` makes `confirm` find the block gone
    that many times (the anchor with it), as a reorg would.
    """

    def __init__(
        self, *, chain_id: int = 31337, contract: str = "0x" + "11" * 20, confirmations: int = 1
    ) -> None:
        self.chain_id = chain_id
        self.contract = contract
        self.confirmations = confirmations
        self.anchors: dict[bytes, AnchorReceipt] = {}
        self.sent = 0
        self.failures_left = 0
        self.reorgs_left = 0

    def find_anchor(self, root: bytes) -> AnchorReceipt | None:
        return self.anchors.get(root)

    def anchor(self, root: bytes) -> AnchorReceipt:
        if self.failures_left:
            self.failures_left -= 1
            raise Retryable("chain RPC unavailable: simulated outage")
        if root in self.anchors:
            raise Permanent("already anchored")
        self.sent += 1
        receipt = AnchorReceipt(
            self.chain_id,
            self.contract,
            "0x" + root.hex(),
            "0x" + f"{self.sent:064x}",
            self.sent,
            "0x" + f"{self.sent:064x}",
            1,
        )
        self.anchors[root] = receipt
        return receipt

    def confirm(self, receipt: AnchorReceipt) -> AnchorReceipt | None:
        if self.reorgs_left:
            self.reorgs_left -= 1
            del self.anchors[bytes.fromhex(receipt.root[2:])]
            return None
        return replace(receipt, confirmations=self.confirmations)
