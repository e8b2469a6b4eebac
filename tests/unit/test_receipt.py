"""Receipt checks: a genuine receipt passes every check, and each tamper is caught by its check."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from proven_jobs import PROVER_KEY, ProvenJobs, prove_window

from anchorline.events import JobKind
from anchorline.proof.chainview import MemoryChainView
from anchorline.proof.manifest import sign
from anchorline.proof.receipt import (
    COULD_NOT_CHECK,
    FAIL,
    PASS,
    SKIP,
    UNCHECKED,
    Check,
    Options,
    verdict,
    verify_receipt,
)
from anchorline_gateway.receipts import NoReceipt, build_receipt

Receipt = dict[str, Any]
ALL = [
    "format",
    "content",
    "manifestHash",
    "manifest",
    "signature",
    "attestation",
    "commitment",
    "leaf",
    "root",
    "chain",
    "transaction",
    "block",
    "registry",
    "finality",
]


@pytest.fixture
def window(creator: LocalAccount) -> ProvenJobs:
    return prove_window(creator)


@pytest.fixture
def receipt(window: ProvenJobs) -> Receipt:
    return build_receipt(window.job("job-1"))


def sha256(data: bytes) -> str:
    return "0x" + hashlib.sha256(data).hexdigest()


def outcomes(checks: list[Check]) -> dict[str, str]:
    return {check.name: check.outcome for check in checks}


def failed(checks: list[Check]) -> list[str]:
    return [check.name for check in checks if check.outcome == FAIL]


def check(receipt: Receipt, chain: MemoryChainView, **options: Any) -> list[Check]:
    # A round trip through JSON, as a receipt travels.
    return verify_receipt(json.loads(json.dumps(receipt)), chain, Options(**options))


def test_a_genuine_receipt_passes_every_check(window: ProvenJobs, receipt: Receipt) -> None:
    checks = check(receipt, window.chain, content_sha256=sha256(window.contents["job-1"]))
    assert [c.name for c in checks] == ALL
    assert set(outcomes(checks).values()) == {PASS}, checks


def test_without_the_content_its_check_is_skipped(window: ProvenJobs, receipt: Receipt) -> None:
    checks = check(receipt, window.chain)
    assert outcomes(checks)["content"] == SKIP
    assert failed(checks) == []


def test_the_receipt_carries_what_the_stages_established(
    window: ProvenJobs, receipt: Receipt, creator: LocalAccount
) -> None:
    assert receipt["format"] == "anchorline-receipt/1"
    assert (receipt["jobId"], receipt["kind"]) == ("job-1", "anchor")
    assert receipt["content"]["sha256"] == sha256(window.contents["job-1"])
    assert receipt["manifest"]["signer"] == creator.address
    assert receipt["attestation"]["prover"] == Account.from_key(PROVER_KEY).address
    assert receipt["proof"]["batchSize"] == 3
    assert len(receipt["proof"]["path"]) == 2
    assert receipt["anchor"]["blockNumber"] == 5
    assert receipt["anchor"]["batchId"] == receipt["proof"]["batchId"]
    assert receipt["verification"]["status"] == "OK"


def test_an_eip712_receipt_passes(creator: LocalAccount) -> None:
    window = prove_window(creator, scheme="eip712")
    receipt = build_receipt(window.job("job-0"))
    assert receipt["manifest"]["scheme"] == "eip712"
    assert failed(check(receipt, window.chain)) == []


def test_a_prover_without_chain_id_still_passes(creator: LocalAccount) -> None:
    window = prove_window(creator, chain_id=None)
    receipt = build_receipt(window.job("job-0"))
    assert "chainId" not in receipt["attestation"]["typedData"]["domain"]
    assert failed(check(receipt, window.chain)) == []


def test_other_content_fails_the_content_check(window: ProvenJobs, receipt: Receipt) -> None:
    checks = check(receipt, window.chain, content_sha256=sha256(b"something else"))
    assert failed(checks) == ["content"]


Tamper = Callable[[Receipt], None]


def edit_manifest(receipt: Receipt) -> None:
    receipt["manifest"]["canonical"] = receipt["manifest"]["canonical"].replace("job 1", "job 9")


def edit_manifest_and_its_hash(receipt: Receipt) -> None:
    edit_manifest(receipt)
    receipt["manifest"]["sha256"] = sha256(receipt["manifest"]["canonical"].encode())


def flip(value: str) -> str:
    """The same hex string with its last digit changed."""
    return value[:-1] + ("0" if value[-1] != "0" else "1")


def signed_by_a_stranger(receipt: Receipt) -> None:
    message = encode_defunct(primitive=receipt["manifest"]["canonical"].encode())
    signature = Account.create().sign_message(message).signature
    receipt["manifest"]["signature"] = "0x" + bytes(signature).hex()


def v_minus_27(section: dict[str, str]) -> str:
    """The same signature with v = 0/1, which recovers the same address."""
    signature = section["signature"]
    return signature[:-2] + f"{int(signature[-2:], 16) - 27:02x}"


def set_root(receipt: Receipt) -> None:
    receipt["proof"]["root"] = receipt["anchor"]["root"] = "0x" + "ee" * 32


TAMPERS: list[tuple[str, Tamper, list[str]]] = [
    ("manifest", edit_manifest, ["manifestHash", "signature"]),
    (
        "manifest and its hash",
        edit_manifest_and_its_hash,
        ["signature", "attestation", "commitment"],
    ),
    ("signature", signed_by_a_stranger, ["signature"]),
    ("salt", lambda r: r["proof"].update(salt=flip(r["proof"]["salt"])), ["leaf"]),
    (
        "path",
        lambda r: r["proof"]["path"][0].update(hash=flip(r["proof"]["path"][0]["hash"])),
        ["root"],
    ),
    (
        "path side",
        lambda r: r["proof"]["path"][0].update(
            position="left" if r["proof"]["path"][0]["position"] == "right" else "right"
        ),
        ["root"],
    ),
    ("root", set_root, ["root", "transaction", "registry"]),
    ("tx", lambda r: r["anchor"].update(txHash="0x" + "99" * 32), ["transaction"]),
    (
        "block number",
        lambda r: r["anchor"].update(blockNumber=4),
        ["transaction", "block", "registry"],
    ),
    (
        "block hash",
        lambda r: r["anchor"].update(blockHash="0x" + "98" * 32),
        ["transaction", "block"],
    ),
    (
        "contract",
        lambda r: r["anchor"].update(contract="0x" + "cd" * 20),
        ["transaction", "registry"],
    ),
    ("chain id", lambda r: r["anchor"].update(chainId=1), ["attestation", "chain"]),
    (
        "commitment",
        lambda r: r["proof"].update(commitment=flip(r["proof"]["commitment"])),
        ["attestation", "commitment", "leaf"],
    ),
    (
        "leaf",
        lambda r: r["proof"].update(leaf=flip(r["proof"]["leaf"])),
        ["attestation", "leaf", "root"],
    ),
    (
        "signer",
        lambda r: r["manifest"].update(signer=Account.create().address),
        ["signature", "attestation", "commitment"],
    ),
    ("job id", lambda r: r.update(jobId="job-9"), ["attestation", "commitment"]),
    ("prover", lambda r: r["attestation"].update(prover=Account.create().address), ["attestation"]),
    (
        "attested fact",
        lambda r: r["attestation"]["typedData"]["message"].update(jobId="job-9"),
        ["attestation"],
    ),
    ("scheme", lambda r: r["manifest"].update(scheme="eip712"), ["signature"]),
    ("anchor removed", lambda r: r.update(anchor=None), ["format"]),
    ("kind unknown", lambda r: r.update(kind="verify"), ["format"]),
    ("hash algorithm", lambda r: r["content"].update(hashAlg="md5"), ["format"]),
    ("confirmations", lambda r: r["anchor"].update(confirmations="many"), ["format"]),
    ("anchor batch id", lambda r: r["anchor"].update(batchId="another batch"), ["root"]),
    ("index", lambda r: r["proof"].update(index=0), ["root"]),
    ("batch size", lambda r: r["proof"].update(batchSize=2), ["root"]),
    (
        "manifest v 0/1",
        lambda r: r["manifest"].update(signature=v_minus_27(r["manifest"])),
        ["signature"],
    ),
    (
        "attestation v 0/1",
        lambda r: r["attestation"].update(signature=v_minus_27(r["attestation"])),
        ["attestation"],
    ),
]


@pytest.mark.parametrize(
    ("tamper", "expected"), [(t, e) for _, t, e in TAMPERS], ids=[name for name, _, _ in TAMPERS]
)
def test_each_tamper_is_caught_by_its_check(
    window: ProvenJobs, receipt: Receipt, tamper: Tamper, expected: list[str]
) -> None:
    tampered = copy.deepcopy(receipt)
    tamper(tampered)
    checks = check(tampered, window.chain, content_sha256=sha256(window.contents["job-1"]))
    assert failed(checks) == expected


def test_a_reorg_that_replaced_the_block_fails_the_block_check(
    window: ProvenJobs, receipt: Receipt
) -> None:
    window.chain.blocks[5] = "0x" + "44" * 32
    assert "block" in failed(check(receipt, window.chain))


def test_another_chain_fails_from_the_chain_check_on(receipt: Receipt) -> None:
    checks = check(receipt, MemoryChainView(id=1, head=100))
    assert failed(checks) == ["chain", "transaction", "block", "registry"]


def test_finality_counts_blocks_on_top(window: ProvenJobs, receipt: Receipt) -> None:
    assert failed(check(receipt, window.chain, min_confirmations=3)) == []
    checks = check(receipt, window.chain, min_confirmations=4)
    assert failed(checks) == ["finality"]
    assert "3 confirmations" in next(c.detail for c in checks if c.name == "finality")


def test_the_expected_prover_is_enforced(window: ProvenJobs, receipt: Receipt) -> None:
    prover = Account.from_key(PROVER_KEY).address
    assert failed(check(receipt, window.chain, prover=prover.lower())) == []
    assert failed(check(receipt, window.chain, prover=Account.create().address)) == ["attestation"]


def test_a_proof_receipt_has_no_anchor_and_skips_the_chain(
    window: ProvenJobs, creator: LocalAccount
) -> None:
    receipt = build_receipt(window.job("job-2"))
    assert receipt["kind"] == "proof"
    assert receipt["anchor"] is None
    checks = check(receipt, window.chain)
    assert failed(checks) == []
    assert [c.name for c in checks if c.outcome == SKIP] == [
        "content",
        "chain",
        "transaction",
        "block",
        "registry",
        "finality",
    ]


@pytest.mark.parametrize(
    "broken",
    [{}, {"format": "something/2"}, {"format": "anchorline-receipt/1", "jobId": "x"}],
)
def test_a_document_that_is_not_a_receipt_fails_the_format_check(broken: Receipt) -> None:
    assert [(c.name, c.outcome) for c in verify_receipt(broken, MemoryChainView())] == [
        ("format", FAIL)
    ]


def test_a_malformed_field_fails_its_check_without_a_crash(
    window: ProvenJobs, receipt: Receipt
) -> None:
    receipt["proof"]["path"] = "not a list"
    receipt["proof"]["salt"] = 42
    assert failed(check(receipt, window.chain)) == ["leaf", "root"]


class DeadChain(MemoryChainView):
    def __getattribute__(self, name: str) -> Any:
        if name in ("chain_id", "block_number", "block_hash", "transaction_receipt", "anchored_at"):
            raise ConnectionRefusedError("connection refused")
        return super().__getattribute__(name)


def test_an_unreachable_chain_leaves_the_chain_checks_unchecked(receipt: Receipt) -> None:
    checks = check(receipt, DeadChain())
    assert failed(checks) == []
    unchecked = [c for c in checks if c.outcome == UNCHECKED]
    assert [c.name for c in unchecked] == ["chain", "transaction", "block", "registry", "finality"]
    assert all("chain RPC failed" in c.detail for c in unchecked)
    assert verdict(checks, Options(prover="0x" + "00" * 20)) == COULD_NOT_CHECK


def test_no_receipt_for_verify_jobs_or_unfinished_jobs(window: ProvenJobs) -> None:
    verify_only = {**window.job("job-0"), "kind": "verify"}
    with pytest.raises(NoReceipt, match="a verify job is not proven"):
        build_receipt(verify_only)
    running = {**window.job("job-0"), "state": "running", "stage": "anchor"}
    with pytest.raises(NoReceipt, match="the job is running at its anchor stage"):
        build_receipt(running)
    failed_job = {**window.job("job-0"), "state": "failed", "stage": "verify", "error": "bad sig"}
    with pytest.raises(NoReceipt, match="failed at its verify stage: bad sig"):
        build_receipt(failed_job)


def test_the_kinds_in_the_window(window: ProvenJobs) -> None:
    assert [window.job(f"job-{i}")["kind"] for i in range(3)] == [
        JobKind.ANCHOR,
        JobKind.ANCHOR,
        JobKind.PROOF,
    ]


def test_eip191_is_recovered_over_the_bytes_of_manifest_canonical(
    window: ProvenJobs, receipt: Receipt, creator: LocalAccount
) -> None:
    # The same manifest with a space: signed over its canonical re-serialisation, not over the
    # bytes the receipt carries, it must not pass the signature check.
    document = json.loads(receipt["manifest"]["canonical"])
    spaced = json.dumps(document, sort_keys=True, ensure_ascii=False)
    receipt["manifest"].update(
        canonical=spaced,
        sha256=sha256(spaced.encode()),
        signature=sign(document, "0x" + bytes(creator.key).hex()),
    )
    checks = {c.name: c for c in check(receipt, window.chain)}
    assert checks["signature"].outcome == FAIL


def test_an_anchor_receipt_without_an_anchor_says_so(receipt: Receipt) -> None:
    receipt["anchor"] = None
    (format_check,) = check(receipt, MemoryChainView())
    assert format_check.detail == "an anchor job's receipt has no anchor"


def test_a_proof_job_in_an_anchored_batch_carries_the_anchor_and_checks_it(
    window: ProvenJobs,
) -> None:
    batch_anchor = window.job("job-0")["result"]["anchor"]
    receipt = build_receipt(window.job("job-2"), batch_anchor=batch_anchor)
    assert receipt["kind"] == "proof"
    assert receipt["anchor"]["txHash"] == batch_anchor["txHash"]
    checks = check(receipt, window.chain)
    assert failed(checks) == []
    assert outcomes(checks)["registry"] == PASS


def test_a_proof_job_takes_no_anchor_of_another_root(window: ProvenJobs) -> None:
    other = {**window.job("job-0")["result"]["anchor"], "root": "0x" + "12" * 32}
    assert build_receipt(window.job("job-2"), batch_anchor=other)["anchor"] is None
