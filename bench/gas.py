"""Gas per anchored job at batch sizes 1, 100 and 1000, beside one registration per item.

    .venv/bin/python bench/gas.py [--runs 5] [--sizes 1,100,1000]

Starts a fresh anvil, deploys the AnchorRegistry and measures, from the transaction receipts:

- per item:  registerContent(contentHash, manifestUri) once per item, as the seed systems did
             (one transaction per item, a 59-character CIDv1 `ipfs://` manifest URI);
- batched:   for each batch size, a Merkle tree over that many salted leaves built as the
             prover builds it, and one anchor(root) transaction; gas per job = gasUsed / size.

Each figure is the median over --runs transactions. anvil is stopped and its state deleted
afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.types import Nonce

from anchorline.infra.anvil import DEV_PRIVATE_KEYS, AnvilChain
from anchorline.infra.ports import free_ports
from anchorline.proof.merkle import MerkleBatch, leaf_hash
from anchorline.proof.registry import deploy_registry, load_artifact

BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def manifest_uri() -> str:
    """An ipfs:// URI of CIDv1 length (59 characters), different each time."""
    return "ipfs://bafkrei" + "".join(BASE32[byte % 32] for byte in os.urandom(45))


class Registry:
    def __init__(self, rpc_url: str, address: str, private_key: str) -> None:
        self.w3 = Web3(Web3.HTTPProvider(rpc_url))
        self.account = Account.from_key(private_key)
        self.contract = self.w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=load_artifact().abi
        )
        self.nonce = int(self.w3.eth.get_transaction_count(self.account.address))
        self.chain_id = self.w3.eth.chain_id

    def gas_of(self, call: Any) -> int:
        tx = call.build_transaction(
            {"from": self.account.address, "nonce": Nonce(self.nonce), "chainId": self.chain_id}
        )
        self.nonce += 1
        tx_hash = self.w3.eth.send_raw_transaction(
            self.account.sign_transaction(tx).raw_transaction
        )
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        assert receipt["status"] == 1, receipt
        return int(receipt["gasUsed"])

    def register_one(self) -> int:
        return self.gas_of(self.contract.functions.registerContent(os.urandom(32), manifest_uri()))

    def anchor_batch(self, size: int) -> int:
        leaves = [leaf_hash(os.urandom(32), os.urandom(32)) for _ in range(size)]
        return self.gas_of(self.contract.functions.anchor(MerkleBatch.build(leaves).root))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="1,100,1000")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    key = DEV_PRIVATE_KEYS[0]
    with tempfile.TemporaryDirectory(prefix="anchorline-gas-") as tmp:
        (port,) = free_ports(1)
        with AnvilChain(state_dir=Path(tmp), port=port) as chain:
            registry = Registry(chain.url, deploy_registry(chain.url, key), key)
            per_item = statistics.median(registry.register_one() for _ in range(args.runs))
            batched = {
                size: statistics.median(registry.anchor_batch(size) for _ in range(args.runs))
                for size in sizes
            }
    print(f"gas, median of {args.runs} transactions each, AnchorRegistry on anvil")
    print(f"{'':28}{'gas per tx':>12}{'gas per job':>13}{'vs per-item':>13}{'cheaper':>10}")
    row = f"{'per item (registerContent)':28}{per_item:>12,.0f}{per_item:>13,.0f}"
    print(f"{row}{1:>13.4f}{1:>9,.1f}x")
    for size, gas in batched.items():
        per_job = gas / size
        row = f"{f'batch of {size:,} (anchor)':28}{gas:>12,.0f}{per_job:>13,.1f}"
        print(f"{row}{per_job / per_item:>13.4f}{per_item / per_job:>9,.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
