"""The verify stage: hash the content, check the manifest and its signer, look it up on chain."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, Unpack

from anchorline.errors import Retryable
from anchorline.events import (
    Event,
    JobKind,
    JobRequested,
    ProveRequested,
    Stage,
    StageState,
    refs_of,
)
from anchorline.proof import manifest as manifests
from anchorline.store.blobstore import BlobReader
from anchorline.stream.stage import Report
from anchorline_verifier.onchain import ContentRegistry, Registration

PROGRESS_STEP = 10
HASH_RE = re.compile(r"0x[0-9a-f]{64}")


@dataclass(frozen=True)
class Verification:
    """The outcome of verifying one job: the seed-000 result shape plus the facts proven next.

    FAIL when a check is false (the job fails); WARN when every check holds but the registry
    does not have the content, or has it from another creator; OK otherwise, including when
    no registry is configured (`onchain` is then None).
    """

    file_hash: str
    size: int
    manifest_hash: str | None
    recovered: str | None
    checks: dict[str, bool]
    reason: str | None
    manifest: str | None = None
    creator: str | None = None
    signature: str = ""
    scheme: str = "eip191"
    onchain: Registration | None = field(default=None)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())

    @property
    def warnings(self) -> list[dict[str, str]]:
        if not self.ok or self.onchain is None:
            return []
        if not self.onchain.registered:
            message = f"content {self.file_hash} is not registered in {self.onchain.registry}"
            return [{"check": "onchainRegistered", "message": message}]
        if self.onchain.creator != self.creator:
            message = f"registered on chain by {self.onchain.creator}, not by {self.creator}"
            return [{"check": "onchainCreator", "message": message}]
        return []

    @property
    def status(self) -> str:
        if not self.ok:
            return "FAIL"
        return "WARN" if self.warnings else "OK"

    def as_result(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "fileHash": self.file_hash,
            "size": self.size,
            "manifestHash": self.manifest_hash,
            "recovered": self.recovered,
            "checks": self.checks,
            "onchain": None if self.onchain is None else self.onchain.as_result(),
            "warnings": self.warnings,
            "reason": self.reason,
            "manifest": self.manifest,
            "signature": self.signature,
            "signatureScheme": self.scheme,
        }


def hash_content(
    blobs: BlobReader,
    uri: str,
    *,
    chunk_size: int,
    progress: Callable[[int], None] | None = None,
    tenant: str | None = None,
) -> tuple[str, int]:
    """Stream the content once, in fixed memory; returns (0x sha256, size)."""
    total = blobs.size(uri, tenant=tenant)
    hasher = hashlib.sha256()
    done = 0
    reported = 0
    for chunk in blobs.chunks(uri, chunk_size=chunk_size, tenant=tenant):
        hasher.update(chunk)
        done += len(chunk)
        percent = done * 100 // total if total else 100
        if progress is not None and percent - reported >= PROGRESS_STEP and percent < 100:
            progress(percent)
            reported = percent
    return "0x" + hasher.hexdigest(), done


def declared_hash(event: JobRequested) -> bytes | None:
    """The content hash a job's manifest claims, if it is well formed (it is checked later)."""
    try:
        claimed = manifests.parse_document(event.manifest).get("content_hash")
    except ValueError:
        return None
    if isinstance(claimed, str) and HASH_RE.fullmatch(claimed):
        return bytes.fromhex(claimed[2:])
    return None


class _Signed(TypedDict, total=False):
    """What the signer gave, carried into the result whatever the checks say."""

    signature: str
    scheme: str
    manifest: str


def check_manifest(
    text: str, signature: str, file_hash: str, size: int, *, scheme: str = "eip191"
) -> Verification:
    """Every check of one manifest against its content's hash. Never raises on bad input."""
    # Recorded with v = 27/28, as a receipt must carry it (docs/receipts.md), whichever the
    # wallet wrote: the signature is the same.
    signed: _Signed = {"signature": manifests.normalized_signature(signature), "scheme": scheme}
    try:
        document = manifests.parse_document(text)
    except ValueError as exc:
        return _failed(file_hash, size, None, None, str(exc), **signed)
    canonical = manifests.canonical_bytes(document)
    manifest_hash = manifests.sha256_hex(canonical)
    signed["manifest"] = canonical.decode()
    manifest: manifests.Manifest | None = None
    invalid: str | None = None
    try:
        manifest = manifests.validate(document)
    except ValueError as exc:
        invalid = str(exc)
    recovered: str | None = None
    reasons: list[str] = []
    if manifest is not None or scheme != "eip712":  # typed data needs a valid manifest
        try:
            recovered = manifests.recover(document, signature, scheme=scheme)
        except ValueError as exc:
            reasons.append(str(exc))
    if manifest is None:
        reasons.append(invalid or "manifest is invalid")
        return _failed(file_hash, size, manifest_hash, recovered, "; ".join(reasons), **signed)
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
        file_hash,
        size,
        manifest_hash,
        recovered,
        checks,
        "; ".join(reasons) or None,
        creator=manifest.creator,
        **signed,
    )


def _failed(
    file_hash: str,
    size: int,
    manifest_hash: str | None,
    recovered: str | None,
    reason: str,
    **signed: Unpack[_Signed],
) -> Verification:
    checks = {"manifestOk": False, "manifestHashOk": False, "creatorOk": False}
    return Verification(file_hash, size, manifest_hash, recovered, checks, reason, **signed)


class VerifyHandler:
    """Consumes JobRequested; emits its result, and ProveRequested for proof and anchor jobs."""

    stage = Stage.VERIFY
    consumes = JobRequested
    batched = False

    def __init__(
        self,
        blobs: BlobReader,
        *,
        chunk_size: int = 1 << 20,
        registry: ContentRegistry | None = None,
    ) -> None:
        self.blobs = blobs
        self.chunk_size = chunk_size
        self.registry = registry
        self.known: dict[bytes, Registration] = {}  # the last prefetch's answers

    def close(self) -> None:
        if self.registry is not None:
            self.registry.close()

    def prefetch(self, events: Sequence[JobRequested]) -> None:
        """Look up, in one request, the content hashes the batch's manifests declare: `verify`
        uses an answer when its content has that hash, and asks alone otherwise. Never raises:
        when the batch request fails, each job asks alone (and retries alone)."""
        self.known = {}
        if self.registry is None:
            return
        declared = {value for value in map(declared_hash, events) if value is not None}
        with contextlib.suppress(Retryable):
            self.known = self.registry.lookup_many(sorted(declared))

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
            tenant=event.tenant,  # its blobs are the submitting tenant's alone
        )
        verification = check_manifest(
            event.manifest, event.signature, file_hash, size, scheme=event.signature_scheme
        )
        if self.registry is not None:
            content_hash = bytes.fromhex(file_hash.removeprefix("0x"))
            onchain = self.known.get(content_hash) or self.registry.lookup(content_hash)
            verification = replace(verification, onchain=onchain)
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
                    priority=event.priority,
                )
            )
        return out
