"""The verifier's overall status (OK / WARN / FAIL), its on-chain lookup and EIP-712 manifests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from anchorline.errors import Retryable
from anchorline.events import Event, JobKind, JobRequested, JobStatus, ProveRequested, StageState
from anchorline.proof.manifest import canonical_bytes, sha256_hex, sign
from anchorline.store.blobstore import MemoryBlobStore
from anchorline_verifier.handler import VerifyHandler, check_manifest
from anchorline_verifier.onchain import MemoryContentRegistry

CONTENT = b"registered content"
SUBMITTED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def key_of(account: LocalAccount) -> str:
    return "0x" + bytes(account.key).hex()


def job(
    blobs: MemoryBlobStore,
    creator: LocalAccount,
    *,
    scheme: str = "eip191",
    signer: LocalAccount | None = None,
    kind: JobKind = JobKind.ANCHOR,
    content: bytes = CONTENT,
) -> JobRequested:
    document = {"content_hash": sha256_hex(CONTENT), "creator": creator.address}
    return JobRequested(
        job_id="job-1",
        kind=kind,
        content_uri=blobs.add(content),
        manifest=json.dumps(document),
        signature=sign(document, key_of(signer or creator), scheme=scheme),
        submitted_at=SUBMITTED,
        signature_scheme=scheme,
    )


def verify(event: JobRequested, blobs: MemoryBlobStore, registry: Any = None) -> list[Event]:
    return VerifyHandler(blobs, registry=registry).handle([event], lambda ref, percent: None)


def verify_result(out: list[Event]) -> dict[str, Any]:
    status = out[0]
    assert isinstance(status, JobStatus) and status.result is not None
    result: dict[str, Any] = json.loads(status.result)
    return result


def digest() -> bytes:
    return bytes.fromhex(sha256_hex(CONTENT)[2:])


def test_ok_when_the_creator_registered_the_content(creator: LocalAccount) -> None:
    blobs, registry = MemoryBlobStore(), MemoryContentRegistry()
    registry.register(digest(), creator.address, block=7, uri="ipfs://m")
    result = verify_result(verify(job(blobs, creator), blobs, registry))
    assert result["status"] == "OK"
    assert result["warnings"] == []
    assert result["onchain"] == {
        "registered": True,
        "creator": creator.address,
        "registeredAt": 7,
        "manifestUri": "ipfs://m",
        "registry": registry.address,
    }


def test_ok_with_onchain_null_when_no_registry_is_configured(creator: LocalAccount) -> None:
    blobs = MemoryBlobStore()
    result = verify_result(verify(job(blobs, creator), blobs))
    assert (result["status"], result["onchain"], result["warnings"]) == ("OK", None, [])


def test_warn_when_the_content_is_not_registered_and_the_job_goes_on(
    creator: LocalAccount,
) -> None:
    blobs, registry = MemoryBlobStore(), MemoryContentRegistry()
    out = verify(job(blobs, creator), blobs, registry)
    result = verify_result(out)
    assert result["status"] == "WARN"
    assert [w["check"] for w in result["warnings"]] == ["onchainRegistered"]
    assert result["onchain"]["registered"] is False
    assert result["onchain"]["creator"] is None
    assert isinstance(out[0], JobStatus) and out[0].state is StageState.SUCCEEDED
    assert isinstance(out[1], ProveRequested)


def test_warn_when_someone_else_registered_the_content(
    creator: LocalAccount, other_key: LocalAccount
) -> None:
    blobs, registry = MemoryBlobStore(), MemoryContentRegistry()
    registry.register(digest(), other_key.address)
    result = verify_result(verify(job(blobs, creator), blobs, registry))
    assert result["status"] == "WARN"
    assert result["warnings"] == [
        {
            "check": "onchainCreator",
            "message": f"registered on chain by {other_key.address}, not by {creator.address}",
        }
    ]


def test_fail_outranks_warn_and_still_reports_the_lookup(
    creator: LocalAccount, other_key: LocalAccount
) -> None:
    blobs, registry = MemoryBlobStore(), MemoryContentRegistry()
    out = verify(job(blobs, creator, signer=other_key), blobs, registry)
    result = verify_result(out)
    assert result["status"] == "FAIL"
    assert result["warnings"] == []
    assert result["onchain"]["registered"] is False
    assert len(out) == 1 and isinstance(out[0], JobStatus)
    assert out[0].state is StageState.FAILED


def test_a_registry_outage_is_retryable(creator: LocalAccount) -> None:
    blobs, registry = MemoryBlobStore(), MemoryContentRegistry()
    registry.down = True
    with pytest.raises(Retryable):
        verify(job(blobs, creator), blobs, registry)


def test_eip712_job_verifies_and_reports_its_scheme(creator: LocalAccount) -> None:
    blobs = MemoryBlobStore()
    event = job(blobs, creator, scheme="eip712")
    out = verify(event, blobs)
    result = verify_result(out)
    assert result["status"] == "OK"
    assert result["recovered"] == creator.address
    assert result["signatureScheme"] == "eip712"
    assert result["signature"] == event.signature
    assert result["manifest"] == canonical_bytes(json.loads(event.manifest)).decode()


def test_eip712_signature_declared_as_eip191_fails(creator: LocalAccount) -> None:
    blobs = MemoryBlobStore()
    event = job(blobs, creator, scheme="eip712")
    mislabelled = JobRequested(**{**event.__dict__, "signature_scheme": "eip191"})
    result = verify_result(verify(mislabelled, blobs))
    assert result["status"] == "FAIL"
    assert result["checks"]["creatorOk"] is False


def test_unknown_scheme_fails_with_a_reason(creator: LocalAccount) -> None:
    verification = check_manifest(
        json.dumps({"content_hash": sha256_hex(CONTENT), "creator": creator.address}),
        "0x" + "11" * 65,
        sha256_hex(CONTENT),
        len(CONTENT),
        scheme="eip4361",
    )
    assert verification.status == "FAIL"
    assert "signature_scheme must be one of eip191, eip712" in (verification.reason or "")


def test_eip712_with_an_invalid_manifest_names_the_invalid_field(creator: LocalAccount) -> None:
    document = {"content_hash": sha256_hex(CONTENT), "creator": creator.address, "metadata": 3}
    verification = check_manifest(
        json.dumps(document), "0x" + "11" * 65, sha256_hex(CONTENT), 1, scheme="eip712"
    )
    assert verification.status == "FAIL"
    assert verification.recovered is None
    assert verification.reason == "metadata must be a JSON object"
    assert verification.manifest == canonical_bytes(document).decode()


def test_a_prefetched_batch_is_looked_up_in_one_request(creator: LocalAccount) -> None:
    blobs, registry = MemoryBlobStore(), MemoryContentRegistry()
    registry.register(digest(), creator.address, block=7, uri="ipfs://m")
    handler = VerifyHandler(blobs, registry=registry)
    events = [job(blobs, creator) for _ in range(5)]

    handler.prefetch(events)
    results = [verify_result(handler.handle([event], lambda ref, p: None)) for event in events]

    assert (registry.batches, registry.lookups) == (1, 0)
    assert {r["onchain"]["creator"] for r in results} == {creator.address}


def test_content_other_than_its_manifest_declares_is_looked_up_alone(
    creator: LocalAccount,
) -> None:
    blobs, registry = MemoryBlobStore(), MemoryContentRegistry()
    handler = VerifyHandler(blobs, registry=registry)
    swapped = job(blobs, creator, content=b"not what the manifest says")

    handler.prefetch([swapped])
    out = handler.handle([swapped], lambda ref, p: None)

    assert registry.lookups == 1  # the answer prefetched was for another hash
    assert only_state(out) is StageState.FAILED


def test_a_failed_batch_request_leaves_each_job_to_its_own_lookup(
    creator: LocalAccount,
) -> None:
    blobs, registry = MemoryBlobStore(), MemoryContentRegistry()
    handler = VerifyHandler(blobs, registry=registry)
    event = job(blobs, creator)
    registry.down = True

    handler.prefetch([event, job(blobs, creator)])  # does not raise
    with pytest.raises(Retryable):
        handler.handle([event], lambda ref, p: None)
    registry.down = False
    assert verify_result(handler.handle([event], lambda ref, p: None))["status"] == "WARN"


def only_state(out: list[Event]) -> StageState:
    assert len(out) == 1 and isinstance(out[0], JobStatus)
    return out[0].state
