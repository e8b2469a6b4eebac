"""What a receipt checker reads from a chain: the port, a JSON-RPC adapter and an in-memory twin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from eth_utils import keccak
from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound

from anchorline.proof.registry import load_artifact

ANCHORED_TOPIC = "0x" + keccak(b"Anchored(bytes32,address,uint256)").hex()


@dataclass(frozen=True)
class ChainLog:
    address: str
    topics: tuple[str, ...]
    data: str


@dataclass(frozen=True)
class TxReceipt:
    """The fields of eth_getTransactionReceipt a receipt check needs, as 0x hex strings."""

    status: int
    block_number: int
    block_hash: str
    to: str | None
    logs: tuple[ChainLog, ...] = ()


class ChainView(Protocol):
    """Read-only questions to one chain; an unreachable node raises OSError or ValueError."""

    def chain_id(self) -> int: ...

    def block_number(self) -> int: ...

    def block_hash(self, number: int) -> str | None: ...

    def transaction_receipt(self, tx_hash: str) -> TxReceipt | None: ...

    def anchored_at(self, contract: str, root: str) -> int: ...


def _hex(value: bytes | str) -> str:
    return value.lower() if isinstance(value, str) else "0x" + bytes(value).hex()


class Web3ChainView:
    """A JSON-RPC endpoint through web3.py."""

    def __init__(self, rpc_url: str, *, timeout_s: float = 10.0) -> None:
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))

    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def block_hash(self, number: int) -> str | None:
        try:
            block = self.w3.eth.get_block(number)
        except BlockNotFound:
            return None
        return _hex(block["hash"])

    def transaction_receipt(self, tx_hash: str) -> TxReceipt | None:
        try:
            receipt = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        logs = tuple(
            ChainLog(
                address=str(log["address"]),
                topics=tuple(_hex(topic) for topic in log["topics"]),
                data=_hex(log["data"]),
            )
            for log in receipt["logs"]
        )
        to = receipt.get("to")
        return TxReceipt(
            status=int(receipt["status"]),
            block_number=int(receipt["blockNumber"]),
            block_hash=_hex(receipt["blockHash"]),
            to=None if to is None else str(to),
            logs=logs,
        )

    def anchored_at(self, contract: str, root: str) -> int:
        registry = self.w3.eth.contract(
            address=Web3.to_checksum_address(contract), abi=load_artifact().abi
        )
        return int(registry.functions.anchoredAt(bytes.fromhex(root[2:])).call())


@dataclass
class MemoryChainView:
    """A chain in dicts, for unit tests of the receipt checks."""

    id: int = 31337
    head: int = 1
    blocks: dict[int, str] = field(default_factory=dict)
    receipts: dict[str, TxReceipt] = field(default_factory=dict)
    anchors: dict[tuple[str, str], int] = field(default_factory=dict)

    def record_anchor(self, *, contract: str, root: str, tx_hash: str, block: int) -> TxReceipt:
        """What the registry's anchor(root) leaves behind when mined in `block`."""
        block_hash = self.blocks.setdefault(block, "0x" + keccak(str(block).encode()).hex())
        log = ChainLog(
            address=contract,
            topics=(ANCHORED_TOPIC, root, "0x" + "00" * 12 + "ab" * 20),
            data="0x" + f"{block:064x}",
        )
        receipt = TxReceipt(1, block, block_hash, contract, (log,))
        self.receipts[tx_hash] = receipt
        self.anchors[(contract.lower(), root)] = block
        self.head = max(self.head, block)
        return receipt

    def chain_id(self) -> int:
        return self.id

    def block_number(self) -> int:
        return self.head

    def block_hash(self, number: int) -> str | None:
        return self.blocks.get(number)

    def transaction_receipt(self, tx_hash: str) -> TxReceipt | None:
        return self.receipts.get(tx_hash.lower())

    def anchored_at(self, contract: str, root: str) -> int:
        return self.anchors.get((contract.lower(), root), 0)
