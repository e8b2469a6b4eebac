"""Only the installation's writers anchor in its registry (a real anvil chain), and the receipt
check pins the submitter to the trust document's chain-writers."""

from __future__ import annotations

import os

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractLogicError

from anchorline.errors import Permanent
from anchorline.infra.anvil import DEV_PRIVATE_KEYS, AnvilChain
from anchorline.proof.chainview import Web3ChainView
from anchorline.proof.receipt import Failed, Options, check_transaction
from anchorline.proof.registry import deploy, has_registry, load_artifact
from anchorline.proof.trust import KeyPeriod, TrustRoots
from anchorline_chain_writer.chain import Web3Registry

OWNER_KEY = DEV_PRIVATE_KEYS[0]


def funded_stranger(anvil: AnvilChain) -> str:
    stranger = Account.create()
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    w3.provider.make_request("anvil_setBalance", [stranger.address, hex(10**20)])  # type: ignore[arg-type]
    return "0x" + bytes(stranger.key).hex()


def anchor_from(anvil: AnvilChain, registry: str, key: str, root: bytes) -> None:
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    account = Account.from_key(key)
    contract = w3.eth.contract(address=registry, abi=load_artifact().abi)
    tx = contract.functions.anchor(root).build_transaction(
        {
            "from": account.address,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": w3.eth.chain_id,
            "gas": 200_000,
        }
    )
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    assert receipt["status"] == 1, "the anchor transaction reverted"


def test_a_strangers_anchor_is_refused_by_the_registry(anvil: AnvilChain) -> None:
    registry = deploy(anvil.url, OWNER_KEY).address
    assert has_registry(anvil.url, registry)
    stranger = funded_stranger(anvil)
    root = os.urandom(32)
    with pytest.raises(Permanent, match="is not a writer of the registry"):
        Web3Registry(anvil.url, registry, stranger).anchor(root)
    with pytest.raises(AssertionError, match="reverted"):
        anchor_from(anvil, registry, stranger, root)
    assert Web3Registry(anvil.url, registry, OWNER_KEY).find_anchor(root) is None


def test_the_owner_alone_allows_a_writer(anvil: AnvilChain) -> None:
    registry = deploy(anvil.url, OWNER_KEY).address
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    contract = w3.eth.contract(address=registry, abi=load_artifact().abi)
    writer = Account.from_key(DEV_PRIVATE_KEYS[2]).address
    with pytest.raises(ContractLogicError):
        contract.functions.setWriter(writer, True).call({"from": writer})
    owner = Account.from_key(OWNER_KEY)
    tx = contract.functions.setWriter(writer, True).build_transaction(
        {
            "from": owner.address,
            "nonce": w3.eth.get_transaction_count(owner.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
    )
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(owner.sign_transaction(tx).raw_transaction), timeout=30
    )
    root = os.urandom(32)
    anchor_from(anvil, registry, DEV_PRIVATE_KEYS[2], root)
    assert contract.functions.anchoredAt(root).call() > 0


def test_the_check_pins_the_submitter_to_the_trust_documents_writers(anvil: AnvilChain) -> None:
    deployment = deploy(anvil.url, OWNER_KEY)
    root = os.urandom(32)
    anchored = Web3Registry(anvil.url, deployment.address, OWNER_KEY).anchor(root)
    receipt = {"anchor": anchored.as_result()}
    owner = Account.from_key(OWNER_KEY).address

    def trust(writer: str) -> Options:
        periods = (KeyPeriod(writer, deployment.block),)
        return Options(
            trust=TrustRoots(31337, deployment.address, deployment.block, periods, periods)
        )

    chain = Web3ChainView(anvil.url)
    assert owner in check_transaction(receipt, chain, trust(owner))
    with pytest.raises(Failed, match="not a chain-writer the trust document lists"):
        check_transaction(receipt, chain, trust(Account.create().address))
