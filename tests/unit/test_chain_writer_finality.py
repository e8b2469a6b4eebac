"""The finality watch's judgement and what it sends when a reorg took an anchor away."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from anchorline.errors import Retryable
from anchorline.events import AnchorRequested, JobStatus, StageState, utcnow
from anchorline.infra.ports import free_ports
from anchorline.stream import codec, headers
from anchorline.stream.topics import Topics
from anchorline_chain_writer.chain import AnchorReceipt, Web3Registry
from anchorline_chain_writer.finality import (
    Partition,
    Verdict,
    Watched,
    Web3AnchorChain,
    anchor_again,
    judge,
)

ROOT = "0x" + "ab" * 32


def receipt(block: int, block_hash: str) -> AnchorReceipt:
    return AnchorReceipt(31337, "0x" + "11" * 20, ROOT, "0x" + "77" * 32, block, block_hash, 1)


@dataclass
class Chain:
    """Blocks by number, and where the registry has the root."""

    blocks: dict[int, str] = field(default_factory=dict)
    anchor: AnchorReceipt | None = None
    final: int | None = None

    def find_anchor(self, root: bytes) -> AnchorReceipt | None:
        return self.anchor

    def head(self) -> int:
        return max(self.blocks, default=0)

    def canonical_hash(self, number: int) -> str | None:
        return self.blocks.get(number)

    def finalized(self) -> int | None:
        return self.final


def watched(offset: int = 7, since: float = 0.0) -> Watched:
    request = AnchorRequested("batch-1", ROOT, ["job-1", "job-2"], utcnow())
    return Watched(request, offset, {"job-1": 2}, since)


def test_an_anchor_waits_until_it_is_deep_enough_then_is_final() -> None:
    chain = Chain({5: "0xa5"}, receipt(5, "0xa5"))
    item = watched()
    assert judge(item, chain, depth=3, now=1.0) is Verdict.WAIT
    chain.blocks.update({6: "0xa6", 7: "0xa7"})
    assert judge(item, chain, depth=3, now=2.0) is Verdict.FINAL


def test_an_anchor_at_or_below_the_nodes_finalized_block_is_final() -> None:
    chain = Chain({5: "0xa5", 6: "0xa6"}, receipt(5, "0xa5"))
    item = watched()
    assert judge(item, chain, depth=12, now=1.0) is Verdict.WAIT
    chain.final = 5
    assert judge(item, chain, depth=12, now=2.0) is Verdict.FINAL


def test_an_anchor_whose_block_was_replaced_is_gone() -> None:
    chain = Chain({5: "0xa5"}, receipt(5, "0xa5"))
    item = watched()
    assert judge(item, chain, depth=3, now=1.0) is Verdict.WAIT
    chain.blocks[5] = "0xb5"  # a reorg
    chain.anchor = None
    assert judge(item, chain, depth=3, now=2.0) is Verdict.GONE


def test_a_request_never_seen_anchored_is_given_up_after_a_while() -> None:
    item = watched(since=0.0)
    assert judge(item, Chain(), depth=3, now=10.0) is Verdict.WAIT
    assert judge(item, Chain(), depth=3, now=10_000.0) is Verdict.GIVE_UP


def test_anchoring_again_bumps_every_job_and_says_why_in_its_history() -> None:
    item = watched()
    item.seen = receipt(5, "0xa5")
    topics = Topics()
    (request, *statuses) = anchor_again(item, topics, now=utcnow())
    topic, key, value, extra = request
    assert (topic, key) == (topics.anchor_requested, ROOT.encode())
    assert codec.decode(value, AnchorRequested) == item.request
    assert headers.generations(dict(extra)) == {"job-1": 3, "job-2": 1}  # type: ignore[arg-type]
    decoded = [codec.decode(value, JobStatus) for _, _, value, _ in statuses]
    assert [(s.job_id, s.generation, s.state) for s in decoded] == [
        ("job-1", 3, StageState.QUEUED),
        ("job-2", 1, StageState.QUEUED),
    ]
    assert all("block 5 (0xa5) was reorganised away" in (s.note or "") for s in decoded)


def test_a_partition_watches_every_request_but_commits_only_in_order() -> None:
    chain = Chain({5: "0xa5", 6: "0xa6"}, receipt(5, "0xa5"))
    partition = Partition()
    first, second = watched(offset=7), watched(offset=8)
    partition.queue.extend([first, second])
    sent: list[Watched] = []
    assert partition.settle(chain, depth=3, now=1.0, send=sent.append) is None
    assert second.seen is not None  # seen before the reorg, though behind the first
    chain.blocks[5] = "0xb5"
    chain.anchor = None
    assert partition.settle(chain, depth=3, now=2.0, send=sent.append) == 9
    assert sent == [first, second]
    assert not partition.queue


def test_a_later_request_settled_first_waits_for_the_one_before_it() -> None:
    chain = Chain({5: "0xa5"}, receipt(5, "0xa5"))
    partition = Partition()
    early, late = watched(offset=7), watched(offset=8)
    late.seen = receipt(4, "0xa4")
    chain.blocks.update({1: "0xa1", 2: "0xa2", 3: "0xa3", 4: "0xa4"})
    partition.queue.extend([early, late])
    assert partition.settle(chain, depth=2, now=1.0, send=lambda item: None) is None
    chain.blocks[6] = "0xa6"
    assert partition.settle(chain, depth=2, now=2.0, send=lambda item: None) == 9


def test_a_node_that_does_not_answer_is_transient_for_the_watch() -> None:
    (port,) = free_ports(1)  # nothing listens there
    registry = Web3Registry(f"http://127.0.0.1:{port}", "0x" + "11" * 20, "0x" + "22" * 32)
    chain = Web3AnchorChain(registry)
    with pytest.raises(Retryable):
        chain.head()
    with pytest.raises(Retryable):
        chain.canonical_hash(1)
    with pytest.raises(Retryable):
        chain.finalized()
