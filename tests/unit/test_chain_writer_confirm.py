"""The handler's finality rule on the in-memory chain: confirmed, or anchored again."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from anchorline.errors import Retryable
from anchorline.events import AnchorRequested, JobRef, JobStatus
from anchorline_chain_writer.chain import MemoryRegistry
from anchorline_chain_writer.handler import AnchorHandler

ROOT = "0x" + "ab" * 32
AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RAW_ROOT = bytes.fromhex(ROOT[2:])


def request() -> AnchorRequested:
    return AnchorRequested(batch_id="batch-1", root=ROOT, job_ids=["a"], requested_at=AT)


def no_report(ref: JobRef, percent: int) -> None:
    raise AssertionError("the chain writer has nothing to report")


def anchor_result(registry: MemoryRegistry, **options: int) -> dict[str, object]:
    (status,) = AnchorHandler(registry, **options).handle([request()], no_report)
    assert isinstance(status, JobStatus)
    return dict(json.loads(status.result or ""))


def test_the_result_carries_the_confirmation_depth() -> None:
    registry = MemoryRegistry(confirmations=6)
    assert anchor_result(registry)["confirmations"] == 6


def test_a_reorged_anchor_is_sent_again_and_the_result_names_the_new_block() -> None:
    registry = MemoryRegistry()
    registry.reorgs_left = 1
    result = anchor_result(registry)
    assert registry.sent == 2
    assert result["blockNumber"] == 2
    assert result["blockHash"] == registry.anchors[RAW_ROOT].block_hash
    assert result["txHash"] == registry.anchors[RAW_ROOT].tx_hash


def test_an_anchor_found_on_chain_is_confirmed_too() -> None:
    registry = MemoryRegistry(confirmations=3)
    registry.anchor(RAW_ROOT)
    registry.reorgs_left = 1  # the block with the earlier anchor is gone by now
    result = anchor_result(registry)
    assert registry.sent == 2
    assert (result["blockNumber"], result["confirmations"]) == (2, 3)


def test_a_root_that_keeps_leaving_the_chain_is_retried_later() -> None:
    registry = MemoryRegistry()
    registry.reorgs_left = 3
    with pytest.raises(Retryable, match="left the chain 3 times"):
        anchor_result(registry, max_reanchors=2)
    assert registry.sent == 3
