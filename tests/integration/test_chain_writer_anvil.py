"""The chain-writer's behaviour on a chain that misbehaves: a real anvil per test, mined by hand.

Each test starts its own anvil (automine off, reorgs, restarts would disturb the shared one)
and drives it through its RPC methods while the handler works in a thread.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from anchorline.errors import Retryable
from anchorline.events import AnchorRequested, Event, JobStatus, new_id, utcnow
from anchorline.infra.anvil import DEV_ADDRESSES, DEV_PRIVATE_KEYS, AnvilChain
from anchorline.infra.ports import free_port
from anchorline.proof.registry import deploy_registry, load_artifact
from anchorline_chain_writer.breaker import BreakerState, CircuitBreaker, CircuitOpen
from anchorline_chain_writer.chain import AnchorReceipt, Web3Registry
from anchorline_chain_writer.handler import AnchorHandler

WRITER_KEY = DEV_PRIVATE_KEYS[1]
WRITER = Web3().eth.account.from_key(WRITER_KEY).address
WAIT_S = 20.0


@dataclass
class Node:
    """An anvil of this test's own, driven through its RPC methods."""

    anvil: AnvilChain
    registry_address: str

    @property
    def w3(self) -> Web3:
        return Web3(Web3.HTTPProvider(self.anvil.url))

    def rpc(self, method: str, *params: Any) -> Any:
        response = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        assert "error" not in response, response
        return response["result"]

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", blocks)

    def head(self) -> int:
        return int(self.w3.eth.block_number)

    def block_hash(self, number: int) -> str:
        return "0x" + bytes(self.w3.eth.get_block(number)["hash"]).hex()

    def waiting(self) -> dict[int, dict[str, Any]]:
        """The writer's transactions in the pool, by nonce."""
        pending = self.rpc("txpool_content")["pending"]
        mine = next(
            (txs for sender, txs in pending.items() if sender.lower() == WRITER.lower()), {}
        )
        return {int(nonce): tx for nonce, tx in mine.items()}

    def anchored_at(self, root: bytes) -> int:
        contract = self.w3.eth.contract(address=self.registry_address, abi=load_artifact().abi)
        return int(contract.functions.anchoredAt(root).call())


def eventually(
    check: Callable[[], Any],
    *,
    what: str,
    future: Future[Any] | None = None,
    timeout: float = WAIT_S,
) -> Any:
    """Poll `check` until it is truthy; a handler that finished meanwhile raises its error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if future is not None and future.done():
            raise AssertionError(f"the handler ended before {what}: {future.result()}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Observed(Web3Registry):
    """The real adapter, telling the test when it has seen its transaction mined."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.confirming = threading.Event()

    def confirm(self, receipt: AnchorReceipt) -> AnchorReceipt | None:
        self.confirming.set()
        return super().confirm(receipt)


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    """A thread for the handler; joined after the test's anvil is gone, so it fails fast."""
    executor = ThreadPoolExecutor(max_workers=1)
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def node(background: ThreadPoolExecutor, anvil: AnvilChain, tmp_path: Path) -> Iterator[Node]:
    # `anvil` (the shared one) only makes this skip, or fail in CI, where anvil is missing.
    with AnvilChain(state_dir=tmp_path / "anvil", port=free_port()) as own:
        yield Node(own, deploy_registry(own.url, DEV_PRIVATE_KEYS[0], writers=DEV_ADDRESSES))


@pytest.fixture
def manual(node: Node) -> Node:
    """The node with automine off: blocks come only from `mine`."""
    node.rpc("evm_setAutomine", False)
    return node


def registry(node: Node, **options: Any) -> Observed:
    options = {"poll_s": 0.02, "tx_timeout_s": WAIT_S, **options}
    return Observed(node.anvil.url, node.registry_address, WRITER_KEY, **options)


def request(root: bytes) -> AnchorRequested:
    return AnchorRequested(new_id(), "0x" + root.hex(), [new_id()], utcnow())


def anchor_in_background(
    background: ThreadPoolExecutor, chain: Web3Registry, root: bytes
) -> Future[list[Event]]:
    return background.submit(AnchorHandler(chain).handle, [request(root)], lambda ref, pct: None)


def result_of(future: Future[list[Event]]) -> dict[str, Any]:
    (status,) = future.result(timeout=WAIT_S)
    assert isinstance(status, JobStatus)
    return dict(json.loads(status.result or ""))


def stays_pending(future: Future[list[Event]], seconds: float = 0.3) -> bool:
    time.sleep(seconds)
    return not future.done()


def test_the_job_succeeds_only_at_the_configured_depth(manual: Node, background: Any) -> None:
    root = os.urandom(32)
    future = anchor_in_background(background, registry(manual, confirmations=3), root)
    eventually(manual.waiting, what="the anchor transaction", future=future)
    manual.mine()
    included = manual.head()
    assert stays_pending(future)  # 1 deep
    manual.mine()
    assert stays_pending(future)  # 2 deep
    manual.mine()

    result = result_of(future)
    assert (result["blockNumber"], result["confirmations"]) == (included, 3)
    assert result["blockHash"] == manual.block_hash(included)
    assert manual.anchored_at(root) == included


def test_a_dropped_transaction_is_replaced_with_the_same_nonce_and_higher_fees(
    manual: Node, background: Any
) -> None:
    root = os.urandom(32)
    chain = registry(manual, stuck_after_s=0.3)
    future = anchor_in_background(background, chain, root)
    ((nonce, first),) = eventually(
        manual.waiting, what="the first transaction", future=future
    ).items()
    manual.rpc("anvil_dropTransaction", first["hash"])

    replacement = eventually(
        lambda: manual.waiting().get(nonce), what="a replacement in the pool", future=future
    )
    manual.mine()
    result = result_of(future)

    assert replacement["hash"] != first["hash"]
    assert result["txHash"] == replacement["hash"]
    mined = manual.w3.eth.get_transaction(result["txHash"])
    assert mined["nonce"] == nonce
    assert mined["maxFeePerGas"] * 1000 >= int(first["maxFeePerGas"], 16) * 1125
    assert mined["maxPriorityFeePerGas"] * 1000 >= int(first["maxPriorityFeePerGas"], 16) * 1125
    assert manual.anchored_at(root) == result["blockNumber"]


def test_a_transaction_priced_out_by_a_rising_base_fee_is_replaced(
    manual: Node, background: Any
) -> None:
    root = os.urandom(32)
    future = anchor_in_background(background, registry(manual, stuck_after_s=0.3), root)
    ((nonce, first),) = eventually(
        manual.waiting, what="the first transaction", future=future
    ).items()
    offered = int(first["maxFeePerGas"], 16)
    manual.rpc("anvil_setNextBlockBaseFeePerGas", hex(offered * 4))
    manual.mine()  # a block it cannot pay for; anvil evicts it (geth would keep it waiting)
    assert manual.w3.eth.get_block("latest")["baseFeePerGas"] > offered
    assert manual.anchored_at(root) == 0

    replacement = eventually(
        lambda: manual.waiting().get(nonce), what="a replacement", future=future
    )
    assert replacement["hash"] != first["hash"]
    manual.mine()
    result = result_of(future)

    mined = manual.w3.eth.get_transaction(result["txHash"])
    assert (mined["nonce"], mined["blockNumber"]) == (nonce, manual.head())
    assert mined["maxFeePerGas"] > offered * 4
    assert manual.rpc("eth_getTransactionByHash", first["hash"]) is None


def test_a_block_reorged_away_after_reaching_its_depth_is_not_confirmed(manual: Node) -> None:
    chain = registry(manual, confirmations=2)
    root = os.urandom(32)
    manual.rpc("evm_setAutomine", True)
    receipt = chain.anchor(root)
    manual.mine()
    assert chain.find_anchor(root) is not None
    manual.rpc("anvil_reorg", manual.head() - receipt.block_number + 1, [])

    assert manual.head() - receipt.block_number + 1 >= 2  # as deep as asked, but not our block
    assert chain.confirm(receipt) is None
    assert chain.find_anchor(root) is None


def test_a_reorg_during_confirmation_anchors_the_batch_again(manual: Node, background: Any) -> None:
    root = os.urandom(32)
    chain = registry(manual, confirmations=3)
    future = anchor_in_background(background, chain, root)
    ((nonce, sent),) = eventually(
        manual.waiting, what="the anchor transaction", future=future
    ).items()
    manual.mine(2)  # included, and 2 of 3 deep
    eventually(chain.confirming.is_set, what="the adapter confirming", future=future)
    first = manual.w3.eth.get_transaction_receipt(sent["hash"])
    first_block, first_hash = first["blockNumber"], "0x" + bytes(first["blockHash"]).hex()
    assert manual.anchored_at(root) == first_block

    manual.rpc("anvil_reorg", 2, [])  # both blocks replaced by empty ones; the anchor is gone
    assert manual.anchored_at(root) == 0
    eventually(lambda: nonce in manual.waiting(), what="the anchor sent again", future=future)
    for _ in range(3):
        manual.mine()
    result = result_of(future)

    assert result["blockHash"] != first_hash
    assert result["blockNumber"] > first_block
    assert result["blockHash"] == manual.block_hash(result["blockNumber"])
    assert result["confirmations"] == 3
    assert manual.anchored_at(root) == result["blockNumber"]
    assert result["txHash"] == sent["hash"]  # the same signed transaction, sent again


def test_the_breaker_opens_while_the_node_is_down_and_closes_when_it_is_back(
    node: Node,
) -> None:
    chain = registry(node, breaker=CircuitBreaker(failure_threshold=2, cooldown_s=0.5))
    handler = AnchorHandler(chain)
    handler.handle([request(os.urandom(32))], lambda ref, pct: None)
    state = node.rpc("anvil_dumpState")
    node.anvil.stop()

    late = request(os.urandom(32))
    for _ in range(2):
        with pytest.raises(Retryable, match="chain RPC unavailable"):
            handler.handle([late], lambda ref, pct: None)
    assert chain.breaker.state is BreakerState.OPEN
    sent = chain.provider.requests_made
    started = time.monotonic()
    with pytest.raises(CircuitOpen):
        handler.handle([late], lambda ref, pct: None)
    assert chain.provider.requests_made == sent
    assert time.monotonic() - started < 0.1

    node.anvil.start()
    node.rpc("anvil_loadState", state)
    time.sleep(0.5)
    (status,) = handler.handle([late], lambda ref, pct: None)

    assert chain.breaker.state is BreakerState.CLOSED
    assert isinstance(status, JobStatus) and status.final
    assert node.anchored_at(bytes.fromhex(late.root[2:])) > 0


def test_rpc_calls_keep_to_the_rate_limit(node: Node) -> None:
    chain = registry(node, rpc_rate_per_s=20.0)
    started = time.monotonic()
    for _ in range(3):
        AnchorHandler(chain).handle([request(os.urandom(32))], lambda ref, pct: None)
    elapsed = time.monotonic() - started

    burst = 20
    assert chain.provider.requests_made > burst
    assert elapsed >= (chain.provider.requests_made - burst) / 20.0 * 0.9


def test_after_a_reorg_dropped_a_confirmed_anchor_the_next_one_takes_its_nonce(
    node: Node,
) -> None:
    # The job of the first root had succeeded (depth 1) before the reorg; the wallet must not
    # send the next root's transaction behind the gap its dropped transaction left.
    chain = registry(node, confirmations=1, stuck_after_s=600)
    first = chain.anchor(os.urandom(32))
    assert chain.confirm(first) is not None
    nonce = int(node.w3.eth.get_transaction(first.tx_hash)["nonce"])
    node.rpc("anvil_reorg", node.head() - first.block_number + 1, [])
    assert node.w3.eth.get_transaction_count(WRITER, "pending") == nonce

    second = chain.anchor(os.urandom(32))

    assert int(node.w3.eth.get_transaction(second.tx_hash)["nonce"]) == nonce
