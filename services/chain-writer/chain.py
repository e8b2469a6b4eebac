"""The registry contract on an EVM chain: the port, the web3 adapter and an in-memory twin."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception

from anchorline.errors import Permanent, Retryable
from anchorline.registry import load_artifact


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

    def find_anchor(self, root: bytes) -> AnchorReceipt | None: ...

    def anchor(self, root: bytes) -> AnchorReceipt: ...


TRANSIENT = (requests.RequestException, TimeExhausted, OSError, TimeoutError)


class Web3Registry:
    """The registry contract through a JSON-RPC endpoint, sending from one hot wallet."""

    def __init__(
        self,
        rpc_url: str,
        address: str,
        private_key: str,
        *,
        confirmations: int = 1,
        tx_timeout_s: float = 120.0,
    ) -> None:
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
        self.contract = self.w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=load_artifact().abi
        )
        self.account = Account.from_key(private_key)
        self.confirmations = confirmations
        self.tx_timeout_s = tx_timeout_s
        self._chain_id: int | None = None

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def find_anchor(self, root: bytes) -> AnchorReceipt | None:
        try:
            block = int(self.contract.functions.anchoredAt(root).call())
            if block == 0:
                return None
            logs = self.contract.events.Anchored().get_logs(
                argument_filters={"root": root}, from_block=block, to_block=block
            )
        except TRANSIENT as exc:
            raise Retryable(f"chain RPC unavailable: {exc}") from exc
        if not logs:
            raise Retryable(f"root 0x{root.hex()} anchored in block {block} but its log is missing")
        log = logs[0]
        return self._receipt(root, log["transactionHash"], block, log["blockHash"])

    def anchor(self, root: bytes) -> AnchorReceipt:
        try:
            tx = self.contract.functions.anchor(root).build_transaction(
                {
                    "from": self.account.address,
                    "nonce": self.w3.eth.get_transaction_count(self.account.address, "pending"),
                    "chainId": self.chain_id,
                }
            )
            signed = self.account.sign_transaction(tx)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.tx_timeout_s)
        except ContractLogicError as exc:
            found = self.find_anchor(root)
            if found is not None:
                return found
            raise Permanent(f"registry rejected root 0x{root.hex()}: {exc}") from exc
        except TRANSIENT as exc:
            raise Retryable(f"chain RPC unavailable: {exc}") from exc
        except Web3Exception as exc:
            raise Retryable(f"chain write failed: {exc}") from exc
        if receipt["status"] != 1:
            raise Retryable(f"anchor transaction {tx_hash.hex()} reverted")
        self._await_confirmations(int(receipt["blockNumber"]))
        return self._receipt(root, tx_hash, int(receipt["blockNumber"]), receipt["blockHash"])

    def _await_confirmations(self, block: int) -> None:
        deadline = time.monotonic() + self.tx_timeout_s
        while self.w3.eth.block_number - block + 1 < self.confirmations:
            if time.monotonic() > deadline:
                raise Retryable(f"block {block} not {self.confirmations} deep in time")
            time.sleep(0.5)

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
    """A chain in a dict, for unit tests: one block per anchor."""

    def __init__(self, *, chain_id: int = 31337, contract: str = "0x" + "11" * 20) -> None:
        self.chain_id = chain_id
        self.contract = contract
        self.anchors: dict[bytes, AnchorReceipt] = {}
        self.sent = 0
        self.failures_left = 0

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
