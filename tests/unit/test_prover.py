from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak

from anchorline.events import (
    AnchorRequested,
    Event,
    JobKind,
    JobRef,
    JobStatus,
    Priority,
    ProveRequested,
    Stage,
    StageState,
)
from anchorline.proof import eip712
from anchorline.proof.attestation import AttestedFacts, Attester, recover_prover
from anchorline.proof.manifest import canonical_bytes
from anchorline.proof.merkle import ProofStep, leaf_hash, root_from_path
from anchorline.stream import codec
from anchorline.stream.runner import Incoming, MessageProcessor, RetryPolicy
from anchorline.stream.topics import Topics
from anchorline_prover.handler import ProveHandler, commitment

SUBMITTED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def prove(job_id: str, kind: JobKind = JobKind.ANCHOR, **changes: Any) -> ProveRequested:
    facts: dict[str, Any] = {
        "content_sha256": "0x" + keccak(b"content " + job_id.encode()).hex(),
        "manifest_sha256": "0x" + keccak(b"manifest " + job_id.encode()).hex(),
        "signer": "0x" + "12" * 20,
        "submitted_at": SUBMITTED,
        "tenant": "acme",
    }
    facts.update(changes)
    return ProveRequested(job_id=job_id, kind=kind, **facts)


PROVER_KEY = "0x" + "5e" * 32


def make_handler(*, salt_key: bytes, chain_id: int | None = None) -> ProveHandler:
    return ProveHandler(salt_key=salt_key, attester=Attester(PROVER_KEY, chain_id=chain_id))


def no_report(ref: JobRef, percent: int) -> None:
    raise AssertionError("the prover has nothing to report")


def statuses(out: list[Event]) -> list[JobStatus]:
    return [event for event in out if isinstance(event, JobStatus)]


def anchors(out: list[Event]) -> list[AnchorRequested]:
    return [event for event in out if isinstance(event, AnchorRequested)]


def results(out: list[Event]) -> dict[str, dict[str, Any]]:
    return {s.job_id: json.loads(s.result or "") for s in statuses(out)}


def root_of(out: list[Event]) -> str:
    roots = {result["root"] for result in results(out).values()}
    assert len(roots) == 1
    return roots.pop()


def test_each_job_gets_a_status_and_anchor_jobs_get_one_batch() -> None:
    events = [prove("a"), prove("p", JobKind.PROOF), prove("b"), prove("q", JobKind.PROOF)]
    out = make_handler(salt_key=b"key").handle(events, no_report)
    done = statuses(out)
    assert [s.job_id for s in done] == ["a", "p", "b", "q"]
    assert all(s.stage is Stage.PROVE and s.state is StageState.SUCCEEDED for s in done)
    assert all(s.progress == 100 for s in done)
    # Proving is the last stage of a proof job, not of an anchor job.
    assert {s.job_id: s.final for s in done} == {"a": False, "p": True, "b": False, "q": True}
    assert {s.job_id: s.content_sha256 for s in done} == {
        e.job_id: e.content_sha256 for e in events
    }
    (anchor,) = anchors(out)
    assert anchor.job_ids == ["a", "b"]
    assert anchor.root == root_of(out)
    assert {r["batchId"] for r in results(out).values()} == {anchor.batch_id}


def test_a_window_of_proof_jobs_asks_for_no_anchor() -> None:
    out = make_handler(salt_key=b"key").handle(
        [prove("p", JobKind.PROOF), prove("q", JobKind.PROOF)], no_report
    )
    assert anchors(out) == []
    assert len(statuses(out)) == 2


def test_every_result_proves_its_job_into_the_root() -> None:
    events = [prove(f"job-{i}", JobKind.PROOF if i % 3 else JobKind.ANCHOR) for i in range(7)]
    handler = make_handler(salt_key=b"key")
    out = handler.handle(events, no_report)
    root = root_of(out)
    for index, event in enumerate(events):
        result = results(out)[event.job_id]
        assert result["index"] == index
        assert result["batchSize"] == 7
        assert result["salt"] == "0x" + handler.salt(event.job_id).hex()
        facts = {
            "job_id": event.job_id,
            "content_sha256": event.content_sha256,
            "manifest_sha256": event.manifest_sha256,
            "signer": event.signer,
        }
        assert result["commitment"] == "0x" + keccak(canonical_bytes(facts)).hex()
        leaf = leaf_hash(bytes.fromhex(result["salt"][2:]), bytes.fromhex(result["commitment"][2:]))
        assert result["leaf"] == "0x" + leaf.hex()
        path = [
            ProofStep(bytes.fromhex(step["hash"][2:]), sibling_on_left=step["position"] == "left")
            for step in result["path"]
        ]
        assert "0x" + root_from_path(leaf, path).hex() == root


def test_the_same_window_gives_the_same_root() -> None:
    events = [prove("a"), prove("b"), prove("c", JobKind.PROOF)]
    first = make_handler(salt_key=b"key").handle(events, no_report)
    again = make_handler(salt_key=b"key").handle(list(events), no_report)
    assert root_of(first) == root_of(again)
    assert anchors(first)[0].root == anchors(again)[0].root
    assert results(first)["a"]["salt"] == results(again)["a"]["salt"]


def test_the_salt_key_changes_every_root() -> None:
    events = [prove("a"), prove("b")]
    one = make_handler(salt_key=b"key-1").handle(events, no_report)
    two = make_handler(salt_key=b"key-2").handle(events, no_report)
    assert root_of(one) != root_of(two)


def test_different_jobs_get_different_salts() -> None:
    handler = make_handler(salt_key=b"key")
    salts = {handler.salt(f"job-{i}") for i in range(100)}
    assert len(salts) == 100
    assert all(len(salt) == 32 for salt in salts)
    assert handler.salt("job-1") == handler.salt("job-1")


def test_a_job_repeated_in_a_window_is_counted_once() -> None:
    events = [prove("a"), prove("b"), prove("a")]
    out = make_handler(salt_key=b"key").handle(events, no_report)
    assert [s.job_id for s in statuses(out)] == ["a", "b"]
    assert {r["batchSize"] for r in results(out).values()} == {2}
    assert anchors(out)[0].job_ids == ["a", "b"]
    single = make_handler(salt_key=b"key").handle([prove("a"), prove("b")], no_report)
    assert root_of(out) == root_of(single)


@pytest.mark.parametrize(
    "changes",
    [
        {"content_sha256": "0x" + "00" * 32},
        {"manifest_sha256": "0x" + "00" * 32},
        {"signer": "0x" + "34" * 20},
    ],
)
def test_the_commitment_binds_every_verified_fact(changes: dict[str, str]) -> None:
    assert commitment(prove("a", **changes)) != commitment(prove("a"))


def test_the_commitment_does_not_depend_on_tenant_or_time() -> None:
    assert commitment(prove("a", tenant="other", submitted_at=datetime.now(UTC))) == commitment(
        prove("a")
    )


def test_each_result_carries_an_attestation_that_recovers_to_the_prover() -> None:
    events = [prove("a"), prove("b", JobKind.PROOF)]
    out = make_handler(salt_key=b"key", chain_id=31337).handle(events, no_report)
    prover = Account.from_key(PROVER_KEY).address
    for event in events:
        result = results(out)[event.job_id]
        attestation = result["attestation"]
        assert attestation["prover"] == prover
        assert recover_prover(json.loads(json.dumps(attestation))) == prover
        typed = attestation["typedData"]
        assert typed["domain"] == {"name": "anchorline", "version": "1", "chainId": 31337}
        assert typed["message"] == {
            "jobId": event.job_id,
            "contentSha256": event.content_sha256,
            "manifestSha256": event.manifest_sha256,
            "signer": event.signer,
            "commitment": result["commitment"],
            "leaf": result["leaf"],
        }
        assert result["commitmentInputs"] == {
            "job_id": event.job_id,
            "content_sha256": event.content_sha256,
            "manifest_sha256": event.manifest_sha256,
            "signer": event.signer,
        }


def test_without_a_chain_id_the_domain_has_none() -> None:
    out = make_handler(salt_key=b"key").handle([prove("a")], no_report)
    typed = results(out)["a"]["attestation"]["typedData"]
    assert typed["domain"] == {"name": "anchorline", "version": "1"}
    assert [f["name"] for f in typed["types"]["EIP712Domain"]] == ["name", "version"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("jobId", "another-job"),
        ("contentSha256", "0x" + "00" * 32),
        ("manifestSha256", "0x" + "00" * 32),
        ("signer", "0x" + "34" * 20),
        ("commitment", "0x" + "00" * 32),
        ("leaf", "0x" + "00" * 32),
    ],
)
def test_a_changed_fact_no_longer_recovers_to_the_prover(field: str, value: str) -> None:
    out = make_handler(salt_key=b"key").handle([prove("a")], no_report)
    attestation = json.loads(json.dumps(results(out)["a"]["attestation"]))
    attestation["typedData"]["message"][field] = value
    assert recover_prover(attestation) != Account.from_key(PROVER_KEY).address


def test_an_attestation_under_another_domain_is_refused() -> None:
    out = make_handler(salt_key=b"key").handle([prove("a")], no_report)
    attestation = json.loads(json.dumps(results(out)["a"]["attestation"]))
    attestation["typedData"]["domain"]["name"] = "someone-else"
    with pytest.raises(ValueError, match="attestation domain"):
        recover_prover(attestation)


def test_a_forged_request_in_a_window_dies_alone_and_the_rest_are_proven() -> None:
    topics = Topics("t")
    window = [prove("a"), prove("forged", signer="not-an-address"), prove("c")]
    batch = [
        Incoming(topics.prove_requested, 0, offset, event.job_id.encode(), codec.encode(event))
        for offset, event in enumerate(window)
    ]
    processor = MessageProcessor(
        make_handler(salt_key=b"k"),
        topics=topics,
        retry=RetryPolicy(),
        publish_now=lambda status: None,
    )
    out = processor.process(batch)
    by_job = {
        status.job_id: status
        for item in out
        if item.topic == topics.job_status
        for status in [codec.decode(item.value, JobStatus)]
    }
    assert by_job["a"].state is StageState.SUCCEEDED and by_job["c"].state is StageState.SUCCEEDED
    assert by_job["forged"].state is StageState.DEAD
    assert by_job["forged"].error == "signer of job forged is not an Ethereum address"
    (letter,) = [item for item in out if item.topic == f"{topics.prove_requested}.dlq"]
    assert letter.key == b"forged"


def test_an_attestation_is_signed_as_with_the_hex_key() -> None:
    """The key parsed once signs exactly as the hex key did (signatures are deterministic)."""
    facts = AttestedFacts(
        "a",
        "0x" + "11" * 32,
        "0x" + "22" * 32,
        "0x" + "33" * 20,
        "0x" + "44" * 32,
        "0x" + "55" * 32,
    )
    attestation = Attester(PROVER_KEY, chain_id=31337).attest(facts)
    assert attestation.signature == eip712.sign(attestation.typed_data, PROVER_KEY)
    assert attestation.prover == Account.from_key(PROVER_KEY).address


def test_a_batch_is_anchored_at_the_priority_of_its_most_urgent_anchor_job() -> None:
    handler = make_handler(salt_key=b"key")
    urgent = prove("p", JobKind.PROOF, priority=Priority.HIGH)  # a proof job is not anchored
    low, normal = prove("a", priority=Priority.LOW), prove("b", priority=Priority.NORMAL)
    out = handler.handle([urgent, low, normal], no_report)
    (anchor,) = anchors(out)
    assert anchor.priority is Priority.NORMAL
    assert {s.job_id: s.priority for s in statuses(out)} == {
        "p": Priority.HIGH,
        "a": Priority.LOW,
        "b": Priority.NORMAL,
    }
    (alone,) = anchors(handler.handle([low], no_report))
    assert alone.priority is Priority.LOW
