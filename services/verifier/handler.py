"""The verify stage: hash the content, check the manifest and its signer."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from anchorline import manifest as manifests
from anchorline.blobstore import BlobReader
from anchorline.events import (
    Event,
    JobKind,
    JobRequested,
    ProveRequested,
    Stage,
    StageState,
    refs_of,
)
from anchorline.stage import Report

PROGRESS_STEP = 10


@dataclass(frozen=True)
class Verification:
    """The outcome of verifying one job: the seed-000 result shape plus the facts proven next."""

    file_hash: str
    size: int
    manifest_hash: str | None
    recovered: str | None
    checks: dict[str, bool]
    reason: str | None

    @property
    def ok(self) -> bool:
        return all(self.checks.values())

    def as_result(self) -> dict[str, Any]:
        return {
            "status": "OK" if self.ok else "FAIL",
            "fileHash": self.file_hash,
            "size": self.size,
            "manifestHash": self.manifest_hash,
            "recovered": self.recovered,
            "checks": self.checks,
            "reason": self.reason,
        }


def hash_content(
    blobs: BlobReader, uri: str, *, chunk_size: int, progress: Callable[[int], None] | None = None
) -> tuple[str, int]:
    """Stream the content once, in fixed memory; returns (0x sha256, size)."""
    total = blobs.size(uri)
    hasher = hashlib.sha256()
    done = 0
    reported = 0
    for chunk in blobs.chunks(uri, chunk_size=chunk_size):
        hasher.update(chunk)
        done += len(chunk)
        percent = done * 100 // total if total else 100
        if progress is not None and percent - reported >= PROGRESS_STEP and percent < 100:
            progress(percent)
            reported = percent
    return "0x" + hasher.hexdigest(), done


def check_manifest(text: str, signature: str, file_hash: str, size: int) -> Verification:
    """Every check of one manifest against its content's hash. Never raises on bad input."""
    try:
        document = manifests.parse_document(text)
    except ValueError as exc:
        return _failed(file_hash, size, None, None, str(exc))
    manifest_hash = manifests.sha256_hex(manifests.canonical_bytes(document))
    recovered: str | None = None
    reasons: list[str] = []
    try:
        recovered = manifests.recover_eip191(manifests.canonical_bytes(document), signature)
    except ValueError as exc:
        reasons.append(str(exc))
    try:
        manifest = manifests.validate(document)
    except ValueError as exc:
        reasons.append(str(exc))
        return _failed(file_hash, size, manifest_hash, recovered, "; ".join(reasons))
    checks = {
        "manifestOk": True,
        "manifestHashOk": manifest.content_hash == file_hash,
        "creatorOk": recovered is not None and recovered == manifest.creator,
    }
    if not checks["manifestHashOk"]:
        reasons.append("content_hash in the manifest does not match the content")
    if recovered is not None and not checks["creatorOk"]:
        reasons.append(f"signed by {recovered}, not by the creator {manifest.creator}")
    return Verification(
        file_hash, size, manifest_hash, recovered, checks, "; ".join(reasons) or None
    )


def _failed(
    file_hash: str, size: int, manifest_hash: str | None, recovered: str | None, reason: str
) -> Verification:
    checks = {"manifestOk": False, "manifestHashOk": False, "creatorOk": False}
    return Verification(file_hash, size, manifest_hash, recovered, checks, reason)


class VerifyHandler:
    """Consumes JobRequested; emits its result, and ProveRequested for proof and anchor jobs."""

    stage = Stage.VERIFY
    consumes = JobRequested
    batched = False

    def __init__(self, blobs: BlobReader, *, chunk_size: int = 1 << 20) -> None:
        self.blobs = blobs
        self.chunk_size = chunk_size

    def handle(self, events: Sequence[JobRequested], report: Report) -> list[Event]:
        out: list[Event] = []
        for event in events:
            out.extend(self.verify(event, report))
        return out

    def verify(self, event: JobRequested, report: Report) -> list[Event]:
        ref = refs_of(event)[0]
        file_hash, size = hash_content(
            self.blobs,
            event.content_uri,
            chunk_size=self.chunk_size,
            progress=lambda percent: report(ref, percent),
        )
        verification = check_manifest(event.manifest, event.signature, file_hash, size)
        result = json.dumps(verification.as_result())
        if not verification.ok:
            failed = ref.status(
                self.stage,
                StageState.FAILED,
                progress=100,
                result=result,
                error=verification.reason,
                error_class="VerificationFailed",
            )
            return [failed]
        ref = replace(ref, content_sha256=file_hash)
        out: list[Event] = [
            ref.status(self.stage, StageState.SUCCEEDED, progress=100, result=result)
        ]
        if event.kind is not JobKind.VERIFY:
            assert verification.manifest_hash is not None and verification.recovered is not None
            out.append(
                ProveRequested(
                    job_id=event.job_id,
                    kind=event.kind,
                    content_sha256=file_hash,
                    manifest_sha256=verification.manifest_hash,
                    signer=verification.recovered,
                    submitted_at=event.submitted_at,
                    tenant=event.tenant,
                )
            )
        return out
