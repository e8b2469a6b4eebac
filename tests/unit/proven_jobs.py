"""Jobs taken through the real verify and prove handlers and a chain in memory, for receipts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eth_account.signers.local import LocalAccount

from anchorline.events import (
    AnchorRequested,
    JobKind,
    JobRequested,
    JobStatus,
    ProveRequested,
    Stage,
    StageState,
)
from anchorline.proof.attestation import Attester
from anchorline.proof.chainview import MemoryChainView
from anchorline.proof.manifest import sign
from anchorline.store.blobstore import MemoryBlobStore
from anchorline_prover.handler import ProveHandler
from anchorline_verifier.handler import VerifyHandler

PROVER_KEY = "0x" + "5e" * 32
CONTRACT = "0x" + "ab" * 20
CHAIN_ID = 31337
ANCHOR_BLOCK = 5
SUBMITTED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass
class ProvenJobs:
    """Every status event of a window of jobs, and the chain their batch was anchored on."""

    statuses: list[JobStatus]
    chain: MemoryChainView
    contents: dict[str, bytes] = field(default_factory=dict)

    def job(self, job_id: str) -> dict[str, Any]:
        """The job record as the gateway reads it from the jobs table."""
        mine = [status for status in self.statuses if status.job_id == job_id]
        last = mine[-1]
        return {
            "job_id": job_id,
            "kind": str(last.kind),
            "state": "succeeded" if last.final else "running",
            "stage": str(last.stage),
            "error": None,
            "finished_at": "2024-05-01T12:00:09+00:00",
            "result": {str(s.stage): json.loads(s.result) for s in mine if s.result},
        }


def no_report(ref: Any, percent: int) -> None:
    return None


def prove_window(
    creator: LocalAccount,
    *,
    kinds: tuple[JobKind, ...] = (JobKind.ANCHOR, JobKind.ANCHOR, JobKind.PROOF),
    scheme: str = "eip191",
    chain_id: int | None = CHAIN_ID,
) -> ProvenJobs:
    """Jobs job-0, job-1, … of `kinds`, verified, proven in one window and anchored in block 5."""
    blobs = MemoryBlobStore()
    verify = VerifyHandler(blobs)
    statuses: list[JobStatus] = []
    requests: list[ProveRequested] = []
    contents: dict[str, bytes] = {}
    for index, kind in enumerate(kinds):
        content = f"content of job {index}\n".encode() * 100
        document = {
            "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
            "creator": creator.address,
            "created_at": "2024-05-01T11:00:00Z",
            "metadata": {"title": f"job {index}", "é": [1, True, None]},
        }
        event = JobRequested(
            job_id=f"job-{index}",
            kind=kind,
            content_uri=blobs.add(content),
            manifest=json.dumps(document),
            signature=sign(document, "0x" + bytes(creator.key).hex(), scheme=scheme),
            submitted_at=SUBMITTED,
            signature_scheme=scheme,
        )
        contents[event.job_id] = content
        for out in verify.handle([event], no_report):
            if isinstance(out, JobStatus):
                statuses.append(out)
            elif isinstance(out, ProveRequested):
                requests.append(out)
    prover = ProveHandler(salt_key=b"salt key", attester=Attester(PROVER_KEY, chain_id=chain_id))
    chain = MemoryChainView(id=CHAIN_ID, head=ANCHOR_BLOCK + 2)
    for out in prover.handle(requests, no_report):
        if isinstance(out, JobStatus):
            statuses.append(out)
        elif isinstance(out, AnchorRequested):
            statuses += anchored(out, chain)
    return ProvenJobs(statuses, chain, contents)


def anchored(request: AnchorRequested, chain: MemoryChainView) -> list[JobStatus]:
    tx_hash = "0x" + "7a" * 32
    receipt = chain.record_anchor(
        contract=CONTRACT, root=request.root, tx_hash=tx_hash, block=ANCHOR_BLOCK
    )
    chain.head = ANCHOR_BLOCK + 2
    result = {
        "chainId": CHAIN_ID,
        "contract": CONTRACT,
        "root": request.root,
        "txHash": tx_hash,
        "blockNumber": ANCHOR_BLOCK,
        "blockHash": receipt.block_hash,
        "confirmations": 1,
        "batchId": request.batch_id,
    }
    return [
        JobStatus(
            job_id=job_id,
            kind=JobKind.ANCHOR,
            stage=Stage.ANCHOR,
            state=StageState.SUCCEEDED,
            final=True,
            progress=100,
            result=json.dumps(result),
            submitted_at=SUBMITTED,
        )
        for job_id in request.job_ids
    ]
