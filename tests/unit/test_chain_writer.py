from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from anchorline.errors import Permanent, Retryable
from anchorline.events import AnchorRequested, Event, JobKind, JobRef, JobStatus, Stage, StageState
from anchorline_chain_writer.chain import MemoryRegistry
from anchorline_chain_writer.handler import AnchorHandler, parse_root

ROOT = "0x" + "ab" * 32
AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def batch(root: str = ROOT, job_ids: tuple[str, ...] = ("a", "b")) -> AnchorRequested:
    return AnchorRequested(batch_id="batch-1", root=root, job_ids=list(job_ids), requested_at=AT)


def no_report(ref: JobRef, percent: int) -> None:
    raise AssertionError("the chain writer has nothing to report")


def results(out: list[Event]) -> list[dict[str, Any]]:
    assert all(isinstance(event, JobStatus) for event in out)
    return [json.loads(event.result or "") for event in out if isinstance(event, JobStatus)]


def test_parse_root_accepts_32_bytes_of_hex() -> None:
    assert parse_root(ROOT) == b"\xab" * 32
    assert parse_root("cd" * 32) == b"\xcd" * 32


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("0x" + "zz" * 32, "is not hex"),
        ("0xabc", "is not hex"),
        ("0x" + "ab" * 31, "is not 32 bytes"),
        ("0x" + "ab" * 33, "is not 32 bytes"),
        ("", "is not 32 bytes"),
    ],
)
def test_malformed_root_is_permanent(root: str, message: str) -> None:
    with pytest.raises(Permanent, match=message):
        parse_root(root)
    registry = MemoryRegistry()
    with pytest.raises(Permanent):
        AnchorHandler(registry).handle([batch(root)], no_report)
    assert registry.sent == 0


def test_anchors_a_root_once_and_finishes_every_job() -> None:
    registry = MemoryRegistry()
    out = AnchorHandler(registry).handle([batch()], no_report)
    assert registry.sent == 1
    assert list(registry.anchors) == [b"\xab" * 32]
    assert [
        (s.job_id, s.kind, s.stage, s.state, s.final) for s in out if isinstance(s, JobStatus)
    ] == [
        ("a", JobKind.ANCHOR, Stage.ANCHOR, StageState.SUCCEEDED, True),
        ("b", JobKind.ANCHOR, Stage.ANCHOR, StageState.SUCCEEDED, True),
    ]
    receipt = registry.anchors[b"\xab" * 32]
    for result in results(out):
        assert result == {**receipt.as_result(), "batchId": "batch-1"}
        assert result["root"] == ROOT


def test_redelivery_of_the_same_root_sends_no_second_transaction() -> None:
    registry = MemoryRegistry()
    handler = AnchorHandler(registry)
    first = handler.handle([batch()], no_report)
    again = handler.handle([batch()], no_report)
    assert registry.sent == 1
    assert {r["txHash"] for r in results(first)} == {r["txHash"] for r in results(again)}
    assert results(first) == results(again)


def test_two_roots_are_two_transactions() -> None:
    registry = MemoryRegistry()
    out = AnchorHandler(registry).handle([batch(), batch("0x" + "cd" * 32, ("c",))], no_report)
    assert registry.sent == 2
    assert len({r["txHash"] for r in results(out)}) == 2
    assert [s.job_id for s in out if isinstance(s, JobStatus)] == ["a", "b", "c"]


def test_a_chain_outage_is_retryable_and_the_retry_anchors_once() -> None:
    registry = MemoryRegistry()
    registry.failures_left = 1
    handler = AnchorHandler(registry)
    with pytest.raises(Retryable):
        handler.handle([batch()], no_report)
    assert registry.sent == 0
    handler.handle([batch()], no_report)
    assert registry.sent == 1


def test_memory_registry_refuses_a_second_anchor_of_a_root() -> None:
    registry = MemoryRegistry()
    registry.anchor(b"\x01" * 32)
    with pytest.raises(Permanent, match="already anchored"):
        registry.anchor(b"\x01" * 32)
    assert registry.find_anchor(b"\x02" * 32) is None
