"""The anchor stage: one transaction per batch root, never two for the same root."""

from __future__ import annotations

import json
from collections.abc import Sequence

from anchorline.errors import Permanent
from anchorline.events import AnchorRequested, Event, Stage, StageState, refs_of
from anchorline.stage import Report
from anchorline_chain_writer.chain import RegistryChain


def parse_root(root: str) -> bytes:
    try:
        raw = bytes.fromhex(root.removeprefix("0x"))
    except ValueError as exc:
        raise Permanent(f"root {root!r} is not hex") from exc
    if len(raw) != 32:
        raise Permanent(f"root {root!r} is not 32 bytes")
    return raw


class AnchorHandler:
    """Consumes AnchorRequested; anchors the root unless the chain has it already."""

    stage = Stage.ANCHOR
    consumes = AnchorRequested
    batched = False

    def __init__(self, chain: RegistryChain) -> None:
        self.chain = chain

    def handle(self, events: Sequence[AnchorRequested], report: Report) -> list[Event]:
        out: list[Event] = []
        for event in events:
            root = parse_root(event.root)
            receipt = self.chain.find_anchor(root) or self.chain.anchor(root)
            result = json.dumps({**receipt.as_result(), "batchId": event.batch_id})
            out.extend(
                ref.status(self.stage, StageState.SUCCEEDED, progress=100, result=result)
                for ref in refs_of(event)
            )
        return out
