"""The trust document: parsed strictly, rotated without dropping a key, pinned by the checks."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from proven_jobs import ANCHOR_BLOCK, CHAIN_ID, CONTRACT, PROVER_KEY, ProvenJobs, prove_window

from anchorline.errors import BadInput
from anchorline.proof.receipt import FAIL, Check, Options, verdict, verify_receipt
from anchorline.proof.trust import KeyPeriod, TrustRoots, parse_trust, rotated
from anchorline_gateway.receipts import build_receipt

PROVER = Account.from_key(PROVER_KEY).address
WRITER = "0x" + "ab" * 20  # the submitter MemoryChainView's anchors carry
STRANGER = Account.create().address


def roots(**overrides: Any) -> TrustRoots:
    values: dict[str, Any] = {
        "chain_id": CHAIN_ID,
        "registry": CONTRACT,
        "deployment_block": 1,
        "provers": (KeyPeriod(PROVER, 0),),
        "chain_writers": (KeyPeriod(WRITER, 0),),
    }
    return parse_trust(json.dumps(TrustRoots(**(values | overrides)).as_json()))


@pytest.fixture
def window(creator: LocalAccount) -> ProvenJobs:
    return prove_window(creator)


def failed_with(window: ProvenJobs, trust: TrustRoots) -> list[Check]:
    receipt = json.loads(json.dumps(build_receipt(window.job("job-0"))))
    return [
        c for c in verify_receipt(receipt, window.chain, Options(trust=trust)) if c.outcome == FAIL
    ]


def test_a_genuine_receipt_checks_against_its_installation(window: ProvenJobs) -> None:
    receipt = build_receipt(window.job("job-0"))
    checks = verify_receipt(receipt, window.chain, Options(trust=roots()))
    assert [c.name for c in checks if c.outcome == FAIL] == []
    assert verdict(checks, Options(trust=roots())) == "valid"


@pytest.mark.parametrize(
    ("trust", "check", "says"),
    [
        (roots(provers=(KeyPeriod(STRANGER, 0),)), "attestation", "not a prover the trust"),
        (roots(registry="0x" + "cd" * 20), "transaction", "not the registry"),
        (roots(chain_writers=(KeyPeriod(STRANGER, 0),)), "transaction", "not a chain-writer"),
        (roots(chain_id=1), "chain", "the trust document 1"),
        (roots(receipt_formats=("anchorline-receipt/2",)), "format", "trust document accepts"),
        # The prover's key was retired before the block its attestation was anchored in.
        (roots(provers=(KeyPeriod(PROVER, 0, ANCHOR_BLOCK - 1),)), "attestation", "for block"),
    ],
    ids=["prover", "registry", "writer", "chain", "format", "retired prover"],
)
def test_a_receipt_of_another_installation_fails_its_check(
    window: ProvenJobs, trust: TrustRoots, check: str, says: str
) -> None:
    (failure,) = failed_with(window, trust)
    assert failure.name == check
    assert says in failure.detail


def test_a_rotated_key_keeps_old_receipts_checking(window: ProvenJobs) -> None:
    before = roots()
    new_prover, new_writer = Account.create().address, Account.create().address
    current = replace(
        before, provers=(KeyPeriod(new_prover, 0),), chain_writers=(KeyPeriod(new_writer, 0),)
    )
    after = rotated(before, current, head=ANCHOR_BLOCK + 10, grace=5)
    assert after.provers == (
        KeyPeriod(PROVER, 0, ANCHOR_BLOCK + 15),
        KeyPeriod(new_prover, ANCHOR_BLOCK + 11),
    )
    assert after.writer_ok(WRITER, ANCHOR_BLOCK) and not after.writer_ok(WRITER, ANCHOR_BLOCK + 16)
    assert failed_with(window, parse_trust(json.dumps(after.as_json()))) == []
    assert rotated(after, current, head=ANCHOR_BLOCK + 50) == after  # nothing changed


def test_a_new_registry_starts_a_new_document() -> None:
    current = roots(registry="0x" + "cd" * 20)
    assert rotated(roots(), current, head=99) == current


@pytest.mark.parametrize(
    "document",
    [
        "[]",
        "{}",
        json.dumps({**roots().as_json(), "format": "anchorline-trust/9"}),
        json.dumps({**roots().as_json(), "chainId": "31337"}),
        json.dumps({**roots().as_json(), "provers": []}),
        json.dumps({**roots().as_json(), "chainWriters": [{"address": "nobody", "fromBlock": 0}]}),
        json.dumps({**roots().as_json(), "registry": {"address": CONTRACT, "deploymentBlock": -1}}),
        "x" * 300_000,
    ],
)
def test_what_is_not_a_trust_document_is_refused_with_a_reason(document: str) -> None:
    with pytest.raises(BadInput):
        parse_trust(document)
