"""The AnchorRegistry contract: its compiled artifact and a deployer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_account import Account
from web3 import Web3

from anchorline.paths import CONTRACTS_DIR

ARTIFACT_PATH = CONTRACTS_DIR / "AnchorRegistry.json"


@dataclass(frozen=True)
class RegistryArtifact:
    """The compiled contract, as `node contracts/compile.mjs` committed it."""

    abi: tuple[dict[str, Any], ...]
    bytecode: str
    deployed_bytecode: str
    compiler: str


@cache
def load_artifact() -> RegistryArtifact:
    """Read contracts/AnchorRegistry.json once."""
    raw = json.loads(ARTIFACT_PATH.read_text())
    return RegistryArtifact(
        abi=tuple(raw["abi"]),
        bytecode=raw["bytecode"],
        deployed_bytecode=raw["deployedBytecode"],
        compiler=raw["compiler"],
    )


@dataclass(frozen=True)
class Deployment:
    address: str
    block: int


def deploy_registry(
    rpc_url: str, private_key: str, *, writers: Sequence[str] = (), timeout: float = 60.0
) -> str:
    """Deploy a fresh AnchorRegistry and return its checksum address; see `deploy`."""
    return deploy(rpc_url, private_key, writers=writers, timeout=timeout).address


def deploy(
    rpc_url: str, private_key: str, *, writers: Sequence[str] = (), timeout: float = 60.0
) -> Deployment:
    """Deploy a fresh AnchorRegistry owned by `private_key`'s address, which may anchor, as may
    `writers`; its address and the block it was deployed in."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    account = Account.from_key(private_key)
    artifact = load_artifact()
    allowed = list(dict.fromkeys([account.address, *map(Web3.to_checksum_address, writers)]))
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    transaction = factory.constructor(allowed).build_transaction(
        {
            "from": account.address,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
    )
    signed = account.sign_transaction(transaction)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
    address = receipt["contractAddress"]
    if receipt["status"] != 1 or address is None:
        raise RuntimeError(f"AnchorRegistry deployment {tx_hash.to_0x_hex()} reverted")
    return Deployment(Web3.to_checksum_address(address), int(receipt["blockNumber"]))


def has_registry(rpc_url: str, address: str, *, timeout: float = 10.0) -> bool:
    """Whether the chain has this artifact's contract at `address` (not after a reset chain)."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    code = bytes(w3.eth.get_code(Web3.to_checksum_address(address)))
    expected = bytes.fromhex(load_artifact().deployed_bytecode.removeprefix("0x"))
    # The deployed code holds the owner (an immutable) where the artifact has zeros.
    return len(code) == len(expected) and all(
        byte == want or want == 0 for byte, want in zip(code, expected, strict=True)
    )
