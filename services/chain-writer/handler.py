"""The anchor stage: one transaction per batch root, never two for the same root."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from anchorline.errors import Permanent, Retryable
from anchorline.events import AnchorRequested, Event, Stage, StageState, refs_of
from anchorline.stream.stage import Report
from anchorline_chain_writer.chain import AnchorReceipt, RegistryChain

log = logging.getLogger(__name__)

MAX_REANCHORS = 3


def parse_root(root: str) -> bytes:
    try:
        raw = bytes.fromhex(root.removeprefix("0x"))
    except ValueError as exc:
        raise Permanent(f"root {root!r} is not hex") from exc
    if len(raw) != 32:
        raise Permanent(f"root {root!r} is not 32 bytes")
    return raw


class AnchorHandler:
    """Consumes AnchorRequested; anchors the root unless the chain has it already, and
    succeeds once its block is deep enough and still canonical. A root whose block a
    reorg removed is anchored again, up to `max_reanchors` times per attempt."""

    stage = Stage.ANCHOR
    consumes = AnchorRequested
    batched = False

    def __init__(self, chain: RegistryChain, *, max_reanchors: int = MAX_REANCHORS) -> None:
        self.chain = chain
        self.max_reanchors = max_reanchors

    def handle(self, events: Sequence[AnchorRequested], report: Report) -> list[Event]:
        out: list[Event] = []
        for event in events:
            receipt = self.anchored(parse_root(event.root))
            result = json.dumps({**receipt.as_result(), "batchId": event.batch_id})
            out.extend(
                ref.status(self.stage, StageState.SUCCEEDED, progress=100, result=result)
                for ref in refs_of(event)
            )
        return out

    def anchored(self, root: bytes) -> AnchorReceipt:
        for _ in range(self.max_reanchors + 1):
            receipt = self.chain.find_anchor(root) or self.chain.anchor(root)
            confirmed = self.chain.confirm(receipt)
            if confirmed is not None:
                return confirmed
            log.warning("a reorg removed the anchor of %s; anchoring it again", receipt.root)
        raise Retryable(f"root 0x{root.hex()} left the chain {self.max_reanchors + 1} times")
