"""The prove stage: a salted commitment leaf per job, the prover's attestation of it, and a Merkle
batch over a window of jobs."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence

from eth_utils import is_address, keccak

from anchorline.errors import Poison
from anchorline.events import (
    AnchorRequested,
    Event,
    JobKind,
    ProveRequested,
    Stage,
    StageState,
    highest,
    new_id,
    refs_of,
    utcnow,
)
from anchorline.proof.attestation import AttestedFacts, Attester
from anchorline.proof.manifest import canonical_bytes
from anchorline.proof.merkle import MerkleBatch, leaf_hash
from anchorline.stream.stage import Report

HASH_RE = re.compile(r"0x[0-9a-f]{64}")


def check_request(event: ProveRequested) -> ProveRequested:
    """The request, if its facts are what the verifier writes; Poison naming the first that
    is not (only a forged record has one)."""
    for name in ("content_sha256", "manifest_sha256"):
        if not HASH_RE.fullmatch(getattr(event, name)):
            raise Poison(f"{name} of job {event.job_id} must be 0x and 64 lowercase hex digits")
    if not is_address(event.signer):
        raise Poison(f"signer of job {event.job_id} is not an Ethereum address")
    return event


def commitment_inputs(event: ProveRequested) -> dict[str, str]:
    """The job's verified facts, as the commitment hashes them."""
    return {
        "job_id": event.job_id,
        "content_sha256": event.content_sha256,
        "manifest_sha256": event.manifest_sha256,
        "signer": event.signer,
    }


def commitment(event: ProveRequested) -> bytes:
    """keccak256 of the canonical JSON of the job's verified facts."""
    return keccak(canonical_bytes(commitment_inputs(event)))


class ProveHandler:
    """Consumes ProveRequested in batch windows; emits each job's proof, with the prover's
    attestation, and the batch to anchor."""

    stage = Stage.PROVE
    consumes = ProveRequested
    batched = True

    def __init__(self, *, salt_key: bytes, attester: Attester) -> None:
        self.salt_key = salt_key
        self.attester = attester

    def salt(self, job_id: str) -> bytes:
        # Derived, not random, so that a re-delivered batch produces the same root.
        return hmac.new(self.salt_key, job_id.encode(), hashlib.sha256).digest()

    def handle(self, events: Sequence[ProveRequested], report: Report) -> list[Event]:
        unique = list({event.job_id: check_request(event) for event in events}.values())
        salts = [self.salt(event.job_id) for event in unique]
        commitments = [commitment(event) for event in unique]
        leaves = [leaf_hash(salt, c) for salt, c in zip(salts, commitments, strict=True)]
        batch = MerkleBatch.build(leaves)
        root = "0x" + batch.root.hex()
        batch_id = new_id()
        anchors = [event for event in unique if event.kind is JobKind.ANCHOR]
        anchored = [event.job_id for event in anchors]
        out: list[Event] = []
        for index, event in enumerate(unique):
            facts = AttestedFacts(
                job_id=event.job_id,
                content_sha256=event.content_sha256,
                manifest_sha256=event.manifest_sha256,
                signer=event.signer,
                commitment="0x" + commitments[index].hex(),
                leaf="0x" + leaves[index].hex(),
            )
            result = {
                "batchId": batch_id,
                "batchSize": len(unique),
                "index": index,
                "salt": "0x" + salts[index].hex(),
                "commitmentInputs": commitment_inputs(event),
                "commitment": facts.commitment,
                "leaf": facts.leaf,
                "root": root,
                "path": [step.as_json() for step in batch.path(index)],
                "attestation": self.attester.attest(facts).as_result(),
            }
            if anchored and event.kind is not JobKind.ANCHOR:
                # The batch's root goes on chain with the anchor jobs: a proof job's receipt
                # takes its anchor from this one's record (the gateway reads it there).
                result["anchoredWith"] = anchored[0]
            status = refs_of(event)[0].status(
                self.stage, StageState.SUCCEEDED, progress=100, result=json.dumps(result)
            )
            out.append(status)
        if anchored:
            priority = highest(event.priority for event in anchors)
            out.append(AnchorRequested(batch_id, root, anchored, utcnow(), priority))
        return out
