from __future__ import annotations

import threading

from anchorline_chain_writer.nonces import NonceManager


class Node:
    """The node's pending transaction count, and how often it was asked."""

    def __init__(self, pending: int) -> None:
        self.pending = pending
        self.asked = 0

    def count(self) -> int:
        self.asked += 1
        return self.pending


def test_starts_from_the_pending_count_and_counts_up_locally() -> None:
    node = Node(pending=7)
    nonces = NonceManager(node.count)
    assert [nonces.allocate() for _ in range(3)] == [7, 8, 9]
    assert node.asked == 1


def test_nothing_is_asked_before_the_first_allocation() -> None:
    node = Node(pending=0)
    NonceManager(node.count)
    assert node.asked == 0


def test_resync_asks_the_node_again_at_the_next_allocation() -> None:
    node = Node(pending=3)
    nonces = NonceManager(node.count)
    assert nonces.allocate() == 3
    node.pending = 10  # someone else used the wallet, or "nonce too low"
    nonces.resync()
    assert node.asked == 1
    assert nonces.allocate() == 10
    assert node.asked == 2


def test_resync_after_a_reorg_can_go_back() -> None:
    node = Node(pending=5)
    nonces = NonceManager(node.count)
    assert [nonces.allocate(), nonces.allocate()] == [5, 6]
    node.pending = 5  # a reorg dropped the transaction with nonce 5
    nonces.resync()
    assert nonces.allocate() == 5


def test_release_returns_only_the_last_nonce() -> None:
    nonces = NonceManager(Node(pending=0).count)
    first, second = nonces.allocate(), nonces.allocate()
    nonces.release(first)  # not the last: giving it back would hand out `second` twice
    assert nonces.allocate() == 2
    nonces.release(2)
    assert nonces.allocate() == 2
    assert second == 1


def test_release_before_any_allocation_does_nothing() -> None:
    nonces = NonceManager(Node(pending=4).count)
    nonces.release(3)
    assert nonces.allocate() == 4


def test_concurrent_allocations_never_repeat_a_nonce() -> None:
    nonces = NonceManager(Node(pending=0).count)
    seen: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(200):
            nonce = nonces.allocate()
            with lock:
                seen.append(nonce)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range(1600))


def test_a_sent_transaction_the_node_no_longer_counts_resyncs_before_the_next() -> None:
    node = Node(pending=5)
    nonces = NonceManager(node.count)
    nonces.sent(nonces.allocate())
    node.pending = 6  # the node has it
    nonces.check_sent()
    assert nonces.allocate() == 6
    nonces.sent(6)
    node.pending = 6  # a reorg dropped nonce 6 after its job succeeded
    nonces.check_sent()
    assert nonces.allocate() == 6  # not 7, which would wait behind the gap


def test_nothing_sent_nothing_asked_before_a_send() -> None:
    node = Node(pending=2)
    nonces = NonceManager(node.count)
    nonces.check_sent()
    assert node.asked == 0
