"""The verifier's registry lookup through web3 on a real anvil chain."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
from urllib.parse import urlparse

import pytest
from eth_account import Account
from web3 import Web3

from anchorline.errors import Retryable
from anchorline.infra.anvil import DEV_PRIVATE_KEYS, AnvilChain
from anchorline.infra.ports import free_ports
from anchorline.proof.registry import load_artifact
from anchorline_verifier.onchain import Registration, RpcContentRegistry

REGISTRANT_KEY = DEV_PRIVATE_KEYS[1]


def register(anvil: AnvilChain, registry_address: str, content_hash: bytes, uri: str) -> int:
    """registerContent from the registrant's account; returns the block it landed in."""
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    account = Account.from_key(REGISTRANT_KEY)
    contract = w3.eth.contract(address=registry_address, abi=load_artifact().abi)
    tx = contract.functions.registerContent(content_hash, uri).build_transaction(
        {
            "from": account.address,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
    )
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    assert receipt["status"] == 1
    return int(receipt["blockNumber"])


def lookup_once(url: str, address: str, content_hash: bytes, **options: float) -> Registration:
    with contextlib.closing(RpcContentRegistry(url, address, **options)) as registry:
        return registry.lookup(content_hash)


def test_registered_content_is_found_with_its_creator_block_and_uri(
    anvil: AnvilChain, registry_address: str
) -> None:
    content_hash = hashlib.sha256(os.urandom(32)).digest()
    block = register(anvil, registry_address, content_hash, "ipfs://bafy-manifest")

    found = lookup_once(anvil.url, registry_address, content_hash)

    assert found.as_result() == {
        "registered": True,
        "creator": Account.from_key(REGISTRANT_KEY).address,
        "registeredAt": block,
        "manifestUri": "ipfs://bafy-manifest",
        "registry": registry_address,
    }


def test_unregistered_content_is_reported_as_such(anvil: AnvilChain, registry_address: str) -> None:
    found = lookup_once(anvil.url, registry_address, os.urandom(32))
    assert found.registered is False
    assert found.as_result()["creator"] is None


def test_an_rpc_endpoint_that_does_not_answer_is_retryable(registry_address: str) -> None:
    (port,) = free_ports(1)  # nothing listens there
    with pytest.raises(Retryable, match="registry lookup failed"):
        lookup_once(f"http://127.0.0.1:{port}", registry_address, os.urandom(32), timeout_s=2)


def test_an_address_without_the_contract_is_retryable(anvil: AnvilChain) -> None:
    empty = Account.create().address
    with pytest.raises(Retryable, match="registry lookup failed"):
        lookup_once(anvil.url, empty, os.urandom(32))


class ConnectionCounter:
    """A TCP relay to a real endpoint that counts the connections made through it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        for sock in [self.server, *self.sockets]:
            sock.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def test_lookups_share_one_connection(anvil: AnvilChain, registry_address: str) -> None:
    relay = ConnectionCounter(urlparse(anvil.url).port or 0)
    try:
        registry = RpcContentRegistry(f"http://127.0.0.1:{relay.port}", registry_address)
        results = [registry.lookup(os.urandom(32)).registered for _ in range(5)]
        registry.close()
    finally:
        relay.close()
    assert results == [False] * 5
    assert relay.accepted == 1


def test_a_batch_lookup_answers_every_hash(anvil: AnvilChain, registry_address: str) -> None:
    registered = hashlib.sha256(os.urandom(32)).digest()
    block = register(anvil, registry_address, registered, "ipfs://batched")
    unknown = os.urandom(32)

    with contextlib.closing(RpcContentRegistry(anvil.url, registry_address)) as registry:
        found = registry.lookup_many([registered, unknown])

    assert found[registered].creator == Account.from_key(REGISTRANT_KEY).address
    assert (found[registered].registered_at, found[registered].manifest_uri) == (
        block,
        "ipfs://batched",
    )
    assert found[unknown].registered is False


def test_a_batch_lookup_to_a_dead_node_is_retryable(registry_address: str) -> None:
    (port,) = free_ports(1)
    with (
        contextlib.closing(
            RpcContentRegistry(f"http://127.0.0.1:{port}", registry_address, timeout_s=2)
        ) as registry,
        pytest.raises(Retryable, match="registry lookup failed"),
    ):
        registry.lookup_many([os.urandom(32)])
