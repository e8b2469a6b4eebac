from __future__ import annotations

import os
import time
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from eth_account import Account
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError

from anchorline.infra.anvil import DEV_PRIVATE_KEYS, AnvilChain
from anchorline.infra.kafka import KafkaBroker
from anchorline.infra.postgres import PostgresServer
from anchorline.proof.registry import load_artifact


def test_kafka_creates_topic_and_round_trips_a_message(kafka: KafkaBroker) -> None:
    topic = f"infra-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    futures[topic].result(timeout=30)

    producer = Producer(
        {"bootstrap.servers": kafka.bootstrap, "acks": "all", "enable.idempotence": True}
    )
    producer.produce(topic, key=b"job-1", value=b"hello")
    assert producer.flush(30) == 0

    message = _consume_one(kafka.bootstrap, topic)
    assert (message.key(), message.value()) == (b"job-1", b"hello")
    assert topic in admin.list_topics(timeout=10).topics


def test_postgres_answers_select_one(postgres: PostgresServer) -> None:
    engine = sa.create_engine(postgres.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_registry_anchors_a_root_once(anvil: AnvilChain, registry_address: str) -> None:
    w3, registry = _registry(anvil, registry_address)
    root = os.urandom(32)

    receipt = _transact(w3, registry.functions.anchor(root), DEV_PRIVATE_KEYS[1])

    assert registry.functions.anchoredAt(root).call() == receipt["blockNumber"]
    submitter = Account.from_key(DEV_PRIVATE_KEYS[1]).address
    assert registry.functions.anchors(root).call() == [receipt["blockNumber"], submitter]
    with pytest.raises(ContractCustomError) as raised:
        registry.functions.anchor(root).call({"from": submitter})
    assert _selector(raised.value) == Web3.keccak(text="AlreadyAnchored(bytes32,uint256)")[:4]


def test_registry_never_anchored_root_reads_zero(anvil: AnvilChain, registry_address: str) -> None:
    _, registry = _registry(anvil, registry_address)
    assert registry.functions.anchoredAt(os.urandom(32)).call() == 0


def test_registry_registers_content_once(anvil: AnvilChain, registry_address: str) -> None:
    w3, registry = _registry(anvil, registry_address)
    content_hash = os.urandom(32)
    creator = Account.from_key(DEV_PRIVATE_KEYS[2]).address

    call = registry.functions.registerContent(content_hash, "blob://manifest.json")
    receipt = _transact(w3, call, DEV_PRIVATE_KEYS[2])

    stored = registry.functions.contents(content_hash).call()
    assert stored == [creator, receipt["blockNumber"], "blob://manifest.json"]
    with pytest.raises(ContractCustomError) as raised:
        call.call({"from": creator})
    assert _selector(raised.value) == Web3.keccak(text="AlreadyRegistered(bytes32)")[:4]


def _consume_one(bootstrap: str, topic: str, *, timeout: float = 30.0) -> Message:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"infra-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                return message
        raise AssertionError(f"no message on {topic} within {timeout}s")
    finally:
        consumer.close()


def _registry(anvil: AnvilChain, address: str) -> tuple[Web3, Contract]:
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    return w3, w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact().abi)


def _transact(w3: Web3, call: Any, private_key: str) -> Any:
    account = Account.from_key(private_key)
    transaction = call.build_transaction(
        {"from": account.address, "nonce": w3.eth.get_transaction_count(account.address, "pending")}
    )
    signed = account.sign_transaction(transaction)
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed.raw_transaction)
    )
    assert receipt["status"] == 1
    return receipt


def _selector(error: ContractCustomError) -> bytes:
    return bytes.fromhex(str(error.data).removeprefix("0x")[:8])
