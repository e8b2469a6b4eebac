"""The chain-writer's web3 adapter on a real anvil chain."""

from __future__ import annotations

import os

from web3 import Web3

from anchorline.events import AnchorRequested, new_id, utcnow
from anchorline.infra.anvil import DEV_PRIVATE_KEYS, AnvilChain
from anchorline_chain_writer.chain import Web3Registry
from anchorline_chain_writer.handler import AnchorHandler


def sender_nonce(anvil: AnvilChain, key: str) -> int:
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    return int(w3.eth.get_transaction_count(w3.eth.account.from_key(key).address))


def test_anchor_then_find_returns_the_same_transaction(
    anvil: AnvilChain, registry_address: str
) -> None:
    chain = Web3Registry(anvil.url, registry_address, DEV_PRIVATE_KEYS[2])
    root = os.urandom(32)
    assert chain.find_anchor(root) is None

    receipt = chain.anchor(root)
    found = chain.find_anchor(root)

    assert found is not None
    assert (found.tx_hash, found.block_number, found.block_hash) == (
        receipt.tx_hash,
        receipt.block_number,
        receipt.block_hash,
    )
    assert receipt.chain_id == 31337
    contract = Web3(Web3.HTTPProvider(anvil.url)).eth.contract(
        address=registry_address, abi=[_ANCHORED_AT]
    )
    assert contract.functions.anchoredAt(root).call() == receipt.block_number


def test_redelivered_batch_is_not_anchored_twice(anvil: AnvilChain, registry_address: str) -> None:
    handler = AnchorHandler(Web3Registry(anvil.url, registry_address, DEV_PRIVATE_KEYS[2]))
    request = AnchorRequested(new_id(), "0x" + os.urandom(32).hex(), [new_id(), new_id()], utcnow())
    before = sender_nonce(anvil, DEV_PRIVATE_KEYS[2])

    first = handler.handle([request], lambda ref, percent: None)
    second = handler.handle([request], lambda ref, percent: None)

    assert sender_nonce(anvil, DEV_PRIVATE_KEYS[2]) == before + 1
    assert [s.result for s in first] == [s.result for s in second]
    assert {s.job_id for s in first} == set(request.job_ids)
    assert all(s.final for s in first)


_ANCHORED_AT = {
    "type": "function",
    "name": "anchoredAt",
    "stateMutability": "view",
    "inputs": [{"name": "root", "type": "bytes32"}],
    "outputs": [{"name": "", "type": "uint256"}],
}
