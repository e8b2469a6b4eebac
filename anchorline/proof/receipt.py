"""Checking a receipt without trusting anchorline: each link from the content to a block on chain.

The format and the order of the checks are specified in docs/receipts.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from eth_utils import keccak, to_checksum_address

from anchorline.proof.attestation import recover_prover
from anchorline.proof.chainview import ANCHORED_TOPIC, ChainView
from anchorline.proof.manifest import canonical_bytes, parse_document, recover, sha256_hex, validate
from anchorline.proof.merkle import ProofStep, leaf_hash, root_from_path

FORMAT = "anchorline-receipt/1"
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
Receipt = dict[str, Any]


@dataclass(frozen=True)
class Check:
    name: str
    outcome: str
    detail: str


@dataclass(frozen=True)
class Options:
    """What the person checking brings besides the receipt."""

    content_sha256: str | None = None
    prover: str | None = None
    min_confirmations: int = 1


class Failed(ValueError):
    """A check that does not hold; its message says why."""


class Skipped(Exception):
    """A check that cannot run with what was given; its message says why."""


def _same(left: str, right: str) -> bool:
    return isinstance(left, str) and isinstance(right, str) and left.lower() == right.lower()


def _bytes32(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or len(value) != 66 or not value.startswith("0x"):
        raise Failed(f"{name} is not 0x followed by 64 hex digits")
    return bytes.fromhex(value[2:])


def _expect(holds: bool, why: str) -> None:
    if not holds:
        raise Failed(why)


# --- offline checks ------------------------------------------------------------------------------


def check_format(receipt: Receipt, options: Options) -> str:
    _expect(receipt.get("format") == FORMAT, f"format is {receipt.get('format')!r}, not {FORMAT}")
    for section in ("content", "manifest", "attestation", "proof"):
        _expect(isinstance(receipt.get(section), dict), f"{section} is missing")
    _expect(isinstance(receipt.get("jobId"), str), "jobId is missing")
    _expect(receipt.get("anchor") is None or isinstance(receipt["anchor"], dict), "bad anchor")
    return f"job {receipt['jobId']} ({receipt.get('kind')})"


def check_content(receipt: Receipt, options: Options) -> str:
    claimed = receipt["content"]["sha256"]
    _bytes32(claimed, "content.sha256")
    if options.content_sha256 is None:
        raise Skipped("no content given; the rest holds for the hash in the receipt")
    _expect(
        _same(options.content_sha256, claimed),
        f"the content's sha256 is {options.content_sha256}, the receipt says {claimed}",
    )
    return f"sha256 {claimed}"


def check_manifest_hash(receipt: Receipt, options: Options) -> str:
    manifest = receipt["manifest"]
    digest = sha256_hex(manifest["canonical"].encode())
    _expect(_same(digest, manifest["sha256"]), f"sha256 of manifest.canonical is {digest}")
    return digest


def check_manifest(receipt: Receipt, options: Options) -> str:
    text = receipt["manifest"]["canonical"]
    document = parse_document(text)
    _expect(canonical_bytes(document) == text.encode(), "manifest.canonical is not canonical")
    manifest = validate(document)
    claimed = receipt["content"]["sha256"]
    _expect(
        _same(manifest.content_hash, claimed),
        f"the manifest is for content {manifest.content_hash}, not {claimed}",
    )
    return f"names the content, creator {manifest.creator}"


def check_signature(receipt: Receipt, options: Options) -> str:
    section = receipt["manifest"]
    document = parse_document(section["canonical"])
    creator = validate(document).creator
    signer = recover(document, section["signature"], scheme=section["scheme"])
    _expect(signer == creator, f"{section['scheme']} signature recovers {signer}, not {creator}")
    _expect(section["signer"] == signer, f"the receipt names signer {section['signer']}")
    return f"{section['scheme']} signature by the creator {signer}"


def check_attestation(receipt: Receipt, options: Options) -> str:
    attestation = receipt["attestation"]
    prover = recover_prover(attestation)
    _expect(prover == attestation["prover"], f"signed by {prover}, not {attestation['prover']}")
    if options.prover is not None:
        expected = to_checksum_address(options.prover)
        _expect(prover == expected, f"signed by {prover}, not the expected prover {expected}")
    message = attestation["typedData"]["message"]
    facts = {
        "jobId": receipt["jobId"],
        "contentSha256": receipt["content"]["sha256"],
        "manifestSha256": receipt["manifest"]["sha256"],
        "signer": receipt["manifest"]["signer"],
        "commitment": receipt["proof"]["commitment"],
        "leaf": receipt["proof"]["leaf"],
    }
    for name, value in facts.items():
        _expect(_same(message.get(name), value), f"attests {name} {message.get(name)}, not {value}")
    domain = attestation["typedData"]["domain"]
    anchor = receipt.get("anchor")
    if "chainId" in domain and anchor is not None:
        _expect(domain["chainId"] == anchor["chainId"], f"attested for chain {domain['chainId']}")
    return f"signed by the prover {prover}"


def check_commitment(receipt: Receipt, options: Options) -> str:
    proof = receipt["proof"]
    inputs = proof["commitmentInputs"]
    facts = {
        "job_id": receipt["jobId"],
        "content_sha256": receipt["content"]["sha256"],
        "manifest_sha256": receipt["manifest"]["sha256"],
        "signer": receipt["manifest"]["signer"],
    }
    _expect(
        inputs == facts, "commitmentInputs are not the receipt's job, content, manifest, signer"
    )
    digest = "0x" + keccak(canonical_bytes(inputs)).hex()
    _expect(_same(digest, proof["commitment"]), f"keccak256 of the inputs is {digest}")
    return digest


def check_leaf(receipt: Receipt, options: Options) -> str:
    proof = receipt["proof"]
    salt = _bytes32(proof["salt"], "proof.salt")
    leaf = "0x" + leaf_hash(salt, _bytes32(proof["commitment"], "proof.commitment")).hex()
    _expect(_same(leaf, proof["leaf"]), f"keccak256(0x00 ‖ salt ‖ commitment) is {leaf}")
    return leaf


def check_root(receipt: Receipt, options: Options) -> str:
    proof = receipt["proof"]
    steps = []
    for step in proof["path"]:
        _expect(step["position"] in ("left", "right"), f"path position {step['position']!r}")
        steps.append(ProofStep(_bytes32(step["hash"], "path hash"), step["position"] == "left"))
    root = "0x" + root_from_path(_bytes32(proof["leaf"], "proof.leaf"), steps).hex()
    _expect(_same(root, proof["root"]), f"the path leads to {root}, not {proof['root']}")
    anchor = receipt.get("anchor")
    if anchor is not None:
        _expect(_same(anchor["root"], root), f"anchor.root is {anchor['root']}, not {root}")
    return f"{len(steps)} steps to {root}"


# --- chain checks --------------------------------------------------------------------------------


def check_chain(receipt: Receipt, chain: ChainView, options: Options) -> str:
    claimed, actual = receipt["anchor"]["chainId"], chain.chain_id()
    _expect(actual == claimed, f"the RPC serves chain {actual}, the receipt names {claimed}")
    return f"chain {actual}"


def check_transaction(receipt: Receipt, chain: ChainView, options: Options) -> str:
    anchor = receipt["anchor"]
    tx = chain.transaction_receipt(anchor["txHash"])
    _expect(tx is not None, f"no transaction {anchor['txHash']} on this chain")
    assert tx is not None
    _expect(tx.status == 1, "the transaction reverted")
    _expect(tx.to is not None and _same(tx.to, anchor["contract"]), f"sent to {tx.to}")
    _expect(tx.block_number == anchor["blockNumber"], f"mined in block {tx.block_number}")
    _expect(_same(tx.block_hash, anchor["blockHash"]), f"mined in block {tx.block_hash}")
    root = anchor["root"].lower()
    logs = [
        log
        for log in tx.logs
        if _same(log.address, anchor["contract"])
        and len(log.topics) >= 2
        and _same(log.topics[0], ANCHORED_TOPIC)
        and _same(log.topics[1], root)
        and int(log.data, 16) == anchor["blockNumber"]
    ]
    _expect(bool(logs), f"the transaction has no Anchored({root}) log from the registry")
    return f"{anchor['txHash']} emitted Anchored({root})"


def check_block(receipt: Receipt, chain: ChainView, options: Options) -> str:
    anchor = receipt["anchor"]
    actual = chain.block_hash(anchor["blockNumber"])
    _expect(
        actual is not None and _same(actual, anchor["blockHash"]),
        f"block {anchor['blockNumber']} is now {actual}: the anchor was reorganised away",
    )
    return f"block {anchor['blockNumber']} is still {actual}"


def check_registry(receipt: Receipt, chain: ChainView, options: Options) -> str:
    anchor = receipt["anchor"]
    block = chain.anchored_at(anchor["contract"], anchor["root"].lower())
    _expect(block == anchor["blockNumber"], f"anchoredAt(root) is {block}")
    return f"anchoredAt(root) = {block}"


def check_finality(receipt: Receipt, chain: ChainView, options: Options) -> str:
    block = receipt["anchor"]["blockNumber"]
    depth = chain.block_number() - block + 1
    _expect(
        depth >= options.min_confirmations,
        f"{_confirmations(depth)}, fewer than the {options.min_confirmations} asked for",
    )
    return f"{_confirmations(depth)} (asked for {options.min_confirmations})"


def _confirmations(depth: int) -> str:
    return "1 confirmation" if depth == 1 else f"{depth} confirmations"


OfflineCheck = Callable[[Receipt, Options], str]
ChainCheck = Callable[[Receipt, ChainView, Options], str]

OFFLINE: tuple[tuple[str, OfflineCheck], ...] = (
    ("content", check_content),
    ("manifestHash", check_manifest_hash),
    ("manifest", check_manifest),
    ("signature", check_signature),
    ("attestation", check_attestation),
    ("commitment", check_commitment),
    ("leaf", check_leaf),
    ("root", check_root),
)
ONCHAIN: tuple[tuple[str, ChainCheck], ...] = (
    ("chain", check_chain),
    ("transaction", check_transaction),
    ("block", check_block),
    ("registry", check_registry),
    ("finality", check_finality),
)


def verify_receipt(
    receipt: Receipt, chain: ChainView, options: Options | None = None
) -> list[Check]:
    """Every check in the documented order; a check that fails does not stop the others."""
    options = options or Options()
    try:
        checks = [Check("format", PASS, check_format(receipt, options))]
    except (Failed, AttributeError, KeyError, TypeError) as exc:
        return [Check("format", FAIL, str(exc))]
    checks += [_run(name, partial(check, receipt, options)) for name, check in OFFLINE]
    if receipt.get("anchor") is None:
        reason = "the receipt has no anchor (a proof job): nothing to look up on chain"
        return [*checks, *(Check(name, SKIP, reason) for name, _ in ONCHAIN)]
    checks += [
        _run(name, partial(check, receipt, chain, options), on_chain=True)
        for name, check in ONCHAIN
    ]
    return checks


def _run(name: str, check: Callable[[], str], *, on_chain: bool = False) -> Check:
    try:
        return Check(name, PASS, check())
    except Skipped as exc:
        return Check(name, SKIP, str(exc))
    except Failed as exc:
        return Check(name, FAIL, str(exc))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        return Check(name, FAIL, f"malformed receipt: {type(exc).__name__}: {exc}")
    except Exception as exc:
        if not on_chain:
            raise
        # Any failure to read the chain (connection refused, an RPC error) means this link is
        # not established, which is a failed check, not a crash of the checker.
        return Check(name, FAIL, f"chain RPC failed: {type(exc).__name__}: {exc}")
