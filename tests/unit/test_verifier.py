from __future__ import annotations

import dataclasses
import itertools
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from anchorline.errors import Retryable
from anchorline.events import (
    Event,
    JobKind,
    JobRef,
    JobRequested,
    JobStatus,
    Priority,
    ProveRequested,
    Stage,
    StageState,
)
from anchorline.proof.manifest import canonical_bytes, sha256_hex
from anchorline.store.blobstore import FileBlobStore, MemoryBlobStore
from anchorline.stream import codec
from anchorline.stream.runner import Incoming, MessageProcessor, Outgoing, RetryPolicy
from anchorline.stream.topics import Topics
from anchorline_verifier.handler import VerifyHandler, check_manifest, hash_content

SignManifest = Callable[..., Any]
SUBMITTED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Reports:
    def __init__(self) -> None:
        self.calls: list[tuple[JobRef, int]] = []

    def __call__(self, ref: JobRef, percent: int) -> None:
        self.calls.append((ref, percent))


def request(
    blobs: MemoryBlobStore,
    content: bytes,
    manifest: str,
    signature: str,
    *,
    kind: JobKind = JobKind.VERIFY,
) -> JobRequested:
    return JobRequested(
        job_id="job-1",
        kind=kind,
        content_uri=blobs.add(content, tenant="acme"),
        manifest=manifest,
        signature=signature,
        submitted_at=SUBMITTED,
        tenant="acme",
    )


def run(
    event: JobRequested, blobs: MemoryBlobStore, *, chunk_size: int = 1 << 20
) -> tuple[list[Event], Reports]:
    reports = Reports()
    return VerifyHandler(blobs, chunk_size=chunk_size).handle([event], reports), reports


def only_status(out: list[Event]) -> JobStatus:
    assert len(out) == 1
    assert isinstance(out[0], JobStatus)
    return out[0]


def result_of(status: JobStatus) -> dict[str, Any]:
    assert status.result is not None
    result: dict[str, Any] = json.loads(status.result)
    return result


def test_verify_job_succeeds_and_ends(sign_manifest: SignManifest, creator: LocalAccount) -> None:
    blobs = MemoryBlobStore()
    signed = sign_manifest(b"hello world")
    out, _ = run(request(blobs, signed.content, signed.text, signed.signature), blobs)
    status = only_status(out)
    assert (status.stage, status.state, status.final) == (
        Stage.VERIFY,
        StageState.SUCCEEDED,
        True,
    )
    assert status.progress == 100
    assert status.content_sha256 == sha256_hex(b"hello world")
    assert (status.job_id, status.tenant, status.submitted_at) == ("job-1", "acme", SUBMITTED)
    assert result_of(status) == {
        "status": "OK",
        "fileHash": sha256_hex(b"hello world"),
        "size": len(b"hello world"),
        "manifestHash": sha256_hex(canonical_bytes(signed.document)),
        "recovered": creator.address,
        "checks": {"manifestOk": True, "manifestHashOk": True, "creatorOk": True},
        "onchain": None,
        "warnings": [],
        "reason": None,
        "manifest": signed.text,
        "signature": signed.signature,
        "signatureScheme": "eip191",
    }


@pytest.mark.parametrize("kind", [JobKind.PROOF, JobKind.ANCHOR])
def test_proof_and_anchor_jobs_go_on_to_the_prover(
    sign_manifest: SignManifest, creator: LocalAccount, kind: JobKind
) -> None:
    blobs = MemoryBlobStore()
    signed = sign_manifest(b"prove me")
    out, _ = run(request(blobs, signed.content, signed.text, signed.signature, kind=kind), blobs)
    assert [type(event) for event in out] == [JobStatus, ProveRequested]
    status, prove = out
    assert isinstance(status, JobStatus) and isinstance(prove, ProveRequested)
    assert status.state is StageState.SUCCEEDED
    assert status.final is False  # more stages follow
    assert result_of(status)["status"] == "OK"
    assert prove == ProveRequested(
        job_id="job-1",
        kind=kind,
        content_sha256=sha256_hex(b"prove me"),
        manifest_sha256=sha256_hex(canonical_bytes(signed.document)),
        signer=creator.address,
        submitted_at=SUBMITTED,
        tenant="acme",
    )


def test_manifest_hash_is_of_the_canonical_form_not_the_submitted_text(
    sign_manifest: SignManifest,
) -> None:
    blobs = MemoryBlobStore()
    signed = sign_manifest()
    spaced = json.dumps(dict(reversed(list(signed.document.items()))), indent=2)
    out, _ = run(request(blobs, signed.content, spaced, signed.signature), blobs)
    result = result_of(only_status(out))
    assert result["status"] == "OK"
    assert result["manifestHash"] == sha256_hex(canonical_bytes(signed.document))


@pytest.mark.parametrize("kind", list(JobKind))
def test_wrong_signer_fails_the_job(
    sign_manifest: SignManifest, other_key: LocalAccount, creator: LocalAccount, kind: JobKind
) -> None:
    blobs = MemoryBlobStore()
    signed = sign_manifest(signer=other_key)
    out, _ = run(request(blobs, signed.content, signed.text, signed.signature, kind=kind), blobs)
    status = only_status(out)  # and no ProveRequested
    assert (status.state, status.final) == (StageState.FAILED, True)
    assert status.error_class == "VerificationFailed"
    result = result_of(status)
    assert result["status"] == "FAIL"
    assert result["recovered"] == other_key.address
    assert result["checks"] == {"manifestOk": True, "manifestHashOk": True, "creatorOk": False}
    assert status.error == f"signed by {other_key.address}, not by the creator {creator.address}"


def test_content_that_does_not_match_the_manifest_fails(sign_manifest: SignManifest) -> None:
    blobs = MemoryBlobStore()
    signed = sign_manifest(b"the original")
    out, _ = run(request(blobs, b"something else", signed.text, signed.signature), blobs)
    status = only_status(out)
    assert status.state is StageState.FAILED
    result = result_of(status)
    assert result["fileHash"] == sha256_hex(b"something else")
    assert result["checks"] == {"manifestOk": True, "manifestHashOk": False, "creatorOk": True}
    assert "content_hash in the manifest does not match the content" in (status.error or "")


def test_manifest_that_is_not_json_fails(sign_manifest: SignManifest) -> None:
    blobs = MemoryBlobStore()
    signed = sign_manifest()
    out, _ = run(request(blobs, signed.content, "{creator: nobody", signed.signature), blobs)
    status = only_status(out)
    assert status.state is StageState.FAILED
    result = result_of(status)
    assert result["manifestHash"] is None
    assert result["recovered"] is None
    assert not any(result["checks"].values())
    assert "manifest is not JSON" in result["reason"]


def test_malformed_signature_fails_without_a_signer(sign_manifest: SignManifest) -> None:
    blobs = MemoryBlobStore()
    signed = sign_manifest()
    out, _ = run(request(blobs, signed.content, signed.text, "0xdeadbeef"), blobs)
    status = only_status(out)
    assert status.state is StageState.FAILED
    result = result_of(status)
    assert result["recovered"] is None
    assert result["checks"] == {"manifestOk": True, "manifestHashOk": True, "creatorOk": False}
    assert "signature must be 0x followed by 130 hex digits" in result["reason"]


def test_manifest_that_breaks_validation_fails(sign_manifest: SignManifest) -> None:
    blobs = MemoryBlobStore()
    signed = sign_manifest(hash_alg="md5")
    out, _ = run(request(blobs, signed.content, signed.text, signed.signature), blobs)
    result = result_of(only_status(out))
    assert result["checks"]["manifestOk"] is False
    assert result["reason"] == "hash_alg must be sha256"
    assert result["manifestHash"] == sha256_hex(canonical_bytes(signed.document))


def test_progress_is_reported_while_hashing_multi_chunk_content(
    sign_manifest: SignManifest,
) -> None:
    blobs = MemoryBlobStore()
    signed = sign_manifest(bytes(range(256)) * 40)  # 10 240 bytes
    out, reports = run(
        request(blobs, signed.content, signed.text, signed.signature), blobs, chunk_size=1024
    )
    assert only_status(out).state is StageState.SUCCEEDED
    percents = [percent for _, percent in reports.calls]
    assert percents == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert {ref.job_id for ref, _ in reports.calls} == {"job-1"}


def test_progress_steps_are_at_least_ten_percent() -> None:
    blobs = MemoryBlobStore()
    uri = blobs.add(b"x" * 1000)
    seen: list[int] = []
    digest, size = hash_content(blobs, uri, chunk_size=30, progress=seen.append)
    assert (digest, size) == (sha256_hex(b"x" * 1000), 1000)
    assert seen and all(b - a >= 10 for a, b in itertools.pairwise(seen))
    assert max(seen) < 100


def test_single_chunk_content_reports_no_intermediate_progress() -> None:
    blobs = MemoryBlobStore()
    uri = blobs.add(b"small")
    seen: list[int] = []
    hash_content(blobs, uri, chunk_size=1024, progress=seen.append)
    assert seen == []


def test_missing_content_is_retryable(sign_manifest: SignManifest) -> None:
    signed = sign_manifest()
    event = request(MemoryBlobStore(), signed.content, signed.text, signed.signature)
    with pytest.raises(Retryable):
        VerifyHandler(MemoryBlobStore()).handle([event], Reports())


def test_check_manifest_never_raises_on_garbage() -> None:
    verification = check_manifest("[1, 2]", "nope", "0x" + "00" * 32, 0)
    assert verification.ok is False
    assert verification.as_result()["status"] == "FAIL"
    assert verification.reason == "manifest must be a JSON object"


@pytest.mark.parametrize(
    ("depth", "reason"),
    [
        (100_000, "manifest is larger than 65536 bytes"),
        (30_000, "manifest nests deeper than 32 levels"),
    ],
)
def test_a_deep_manifest_fails_the_job_with_the_reason(
    sign_manifest: SignManifest, depth: int, reason: str
) -> None:
    blobs = MemoryBlobStore()
    signed = sign_manifest()
    deep = "[" * depth + "]" * depth
    out, _ = run(request(blobs, signed.content, deep, signed.signature), blobs)
    status = only_status(out)
    assert status.state is StageState.FAILED
    assert reason in (status.error or "")


@pytest.mark.parametrize(
    ("roots", "uri", "reason"),
    [
        ((), "file:///dev/zero", "file:// content URIs are not allowed"),
        ((), "file:///etc/hostname", "file:// content URIs are not allowed"),
        (("/dev",), "file:///dev/zero", "is not a regular file"),
        (("/dev",), "file:///etc/hostname", "outside ANCHORLINE_CONTENT_ROOTS"),
    ],
)
def test_server_files_are_not_content_unless_allowed(
    tmp_path: Path, sign_manifest: SignManifest, roots: tuple[str, ...], uri: str, reason: str
) -> None:
    store = FileBlobStore(tmp_path, content_roots=[Path(root) for root in roots])
    signed = sign_manifest()
    event = JobRequested(
        job_id="job-1",
        kind=JobKind.VERIFY,
        content_uri=uri,
        manifest=signed.text,
        signature=signed.signature,
        submitted_at=SUBMITTED,
    )
    topics = Topics("t")
    processor = MessageProcessor(
        VerifyHandler(store), topics=topics, retry=RetryPolicy(), publish_now=lambda status: None
    )
    incoming = Incoming(topics.jobs_requested, 0, 0, b"job-1", codec.encode(event))
    done: list[list[Outgoing]] = []
    worker = threading.Thread(
        target=lambda: done.append(processor.process([incoming])), daemon=True
    )
    worker.start()
    worker.join(20)
    assert done, "the verifier was still reading after 20 s"
    (item,) = done[0]
    status = codec.decode(item.value, JobStatus)
    assert status.state is StageState.FAILED
    assert reason in (status.error or "")


def test_closing_the_handler_lets_its_registry_connection_go() -> None:
    """StageRunner closes a Closing handler when it stops: the verifier's registry client held
    a socket open for good (a ResourceWarning once the runner was gone)."""
    from anchorline.stream.stage import Closing
    from anchorline_verifier.onchain import MemoryContentRegistry

    registry = MemoryContentRegistry()
    handler = VerifyHandler(MemoryBlobStore(), registry=registry)
    assert isinstance(handler, Closing)
    handler.close()
    assert registry.closed


def test_a_signature_with_v_0_or_1_is_recorded_with_27_or_28(
    sign_manifest: SignManifest, creator: LocalAccount
) -> None:
    # Some wallets write v as 0/1: the same signature, which a receipt carries as 27/28.
    signed = sign_manifest(b"v as a hardware wallet writes it")
    text, signature = json.dumps(signed.document), signed.signature
    low_v = signature[:-2] + f"{int(signature[-2:], 16) - 27:02x}"
    verification = check_manifest(text, low_v, sha256_hex(signed.content), len(signed.content))
    assert verification.checks["creatorOk"] is True
    assert verification.signature == signature


@pytest.mark.parametrize("priority", list(Priority))
def test_the_prove_request_and_the_status_carry_the_jobs_priority(
    sign_manifest: SignManifest, priority: Priority
) -> None:
    blobs = MemoryBlobStore()
    signed = sign_manifest(b"prove me")
    job = request(blobs, signed.content, signed.text, signed.signature, kind=JobKind.PROOF)
    out, _ = run(dataclasses.replace(job, priority=priority), blobs)
    status, prove = out
    assert isinstance(status, JobStatus) and isinstance(prove, ProveRequested)
    assert (status.priority, prove.priority) == (priority, priority)
