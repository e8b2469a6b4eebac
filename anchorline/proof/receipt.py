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
from anchorline.proof.chainview import ANCHORED_TOPIC, ChainLog, ChainView
from anchorline.proof.manifest import (
    SCHEMES,
    canonical_bytes,
    parse_document,
    recover,
    recover_eip191,
    sha256_hex,
    signature_v,
    validate,
)
from anchorline.proof.merkle import ProofStep, leaf_hash, path_sides, root_from_path
from anchorline.proof.trust import TrustRoots

FORMAT = "anchorline-receipt/1"
KINDS = ("anchor", "proof")
HASH_ALG = "sha256"
SIGNATURE_VS = (27, 28)
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
UNCHECKED = "ERROR"  # the chain could not be asked: neither held nor failed
Receipt = dict[str, Any]


@dataclass(frozen=True)
class Check:
    name: str
    outcome: str
    detail: str


@dataclass(frozen=True)
class Options:
    """What the person checking brings besides the receipt: the content, and what they trust
    (the installation's trust document, or a prover and a registry address)."""

    content_sha256: str | None = None
    prover: str | None = None
    registry: str | None = None
    trust: TrustRoots | None = None
    min_confirmations: int | None = None

    @property
    def pinned(self) -> bool:
        """Whether anything ties the receipt to an installation, beyond its own consistency."""
        return self.trust is not None or self.prover is not None or self.registry is not None

    @property
    def depth(self) -> int:
        if self.min_confirmations is not None:
            return self.min_confirmations
        return self.trust.confirmations if self.trust is not None else 1


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


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _strict_v(signature: Any, name: str) -> None:
    try:
        v = signature_v(signature)
    except ValueError as exc:
        raise Failed(f"{name}: {exc}") from exc
    _expect(v in SIGNATURE_VS, f"{name} has v = {v}; a receipt's signatures have v = 27 or 28")


def _anchor_block(receipt: Receipt) -> int | None:
    anchor = receipt.get("anchor")
    return anchor["blockNumber"] if isinstance(anchor, dict) else None


# --- offline checks ------------------------------------------------------------------------------


ANCHOR_FIELDS = ("chainId", "contract", "root", "txHash", "blockNumber", "blockHash")


def check_format(receipt: Receipt, options: Options) -> str:
    _expect(receipt.get("format") == FORMAT, f"format is {receipt.get('format')!r}, not {FORMAT}")
    for section in ("content", "manifest", "attestation", "proof"):
        _expect(isinstance(receipt.get(section), dict), f"{section} is missing")
    _expect(isinstance(receipt.get("jobId"), str), "jobId is missing")
    kind = receipt.get("kind")
    _expect(kind in KINDS, f"kind is {kind!r}, not one of {', '.join(KINDS)}")
    hash_alg = receipt["content"].get("hashAlg")
    _expect(hash_alg == HASH_ALG, f"content.hashAlg is {hash_alg!r}, not {HASH_ALG}")
    anchor = receipt.get("anchor")
    _expect(anchor is None or isinstance(anchor, dict), "anchor is neither an object nor null")
    _expect(kind != "anchor" or anchor is not None, "an anchor job's receipt has no anchor")
    if anchor is not None:
        _check_anchor_section(anchor)
    if options.trust is not None:
        formats = options.trust.receipt_formats
        _expect(FORMAT in formats, f"the trust document accepts {formats}, not {FORMAT}")
    anchored = " (its batch anchored)" if kind == "proof" and anchor is not None else ""
    return f"job {receipt['jobId']} ({kind}){anchored}"


def _check_anchor_section(anchor: dict[str, Any]) -> None:
    missing = [name for name in ANCHOR_FIELDS if name not in anchor]
    _expect(not missing, f"anchor lacks {', '.join(missing)}")
    for name in ("chainId", "blockNumber"):
        _expect(_integer(anchor[name]) and anchor[name] > 0, f"anchor.{name} is not an integer")
    for name in ("contract", "root", "txHash", "blockHash"):
        _expect(isinstance(anchor[name], str), f"anchor.{name} is not a string")
    confirmations = anchor.get("confirmations", 0)
    _expect(_integer(confirmations), "anchor.confirmations is not an integer of 0 or more")


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
    text, signature, scheme = section["canonical"], section["signature"], section["scheme"]
    _expect(scheme in SCHEMES, f"manifest.scheme is {scheme!r}, not one of {', '.join(SCHEMES)}")
    _strict_v(signature, "manifest.signature")
    document = parse_document(text)
    creator = validate(document).creator
    # EIP-191 signs bytes: exactly those of manifest.canonical, never a re-serialisation.
    if scheme == "eip191":
        signer = recover_eip191(text.encode(), signature)
    else:
        signer = recover(document, signature, scheme=scheme)
    _expect(signer == creator, f"{scheme} signature recovers {signer}, not {creator}")
    _expect(section["signer"] == signer, f"the receipt names signer {section['signer']}")
    return f"{scheme} signature by the creator {signer}"


def check_attestation(receipt: Receipt, options: Options) -> str:
    attestation = receipt["attestation"]
    _strict_v(attestation.get("signature"), "attestation.signature")
    prover = recover_prover(attestation)
    _expect(prover == attestation["prover"], f"signed by {prover}, not {attestation['prover']}")
    if options.prover is not None:
        expected = to_checksum_address(options.prover)
        _expect(prover == expected, f"signed by {prover}, not the expected prover {expected}")
    block = _anchor_block(receipt)
    if options.trust is not None:
        when = "" if block is None else f" for block {block}"
        _expect(
            options.trust.prover_ok(prover, block),
            f"signed by {prover}, not a prover the trust document lists{when}",
        )
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
    index, size = proof["index"], proof["batchSize"]
    _expect(_integer(index) and _integer(size) and index < size, f"index {index} of {size}")
    sides = [step.sibling_on_left for step in steps]
    _expect(sides == path_sides(index, size), f"the path is not that of leaf {index} of {size}")
    root = "0x" + root_from_path(_bytes32(proof["leaf"], "proof.leaf"), steps).hex()
    _expect(_same(root, proof["root"]), f"the path leads to {root}, not {proof['root']}")
    anchor = receipt.get("anchor")
    if anchor is not None:
        _expect(_same(anchor["root"], root), f"anchor.root is {anchor['root']}, not {root}")
        batch = anchor.get("batchId")
        _expect(batch == proof["batchId"], f"anchor.batchId is {batch}, not {proof['batchId']}")
    return f"{len(steps)} steps to {root}"


# --- chain checks --------------------------------------------------------------------------------


def check_chain(receipt: Receipt, chain: ChainView, options: Options) -> str:
    claimed, actual = receipt["anchor"]["chainId"], chain.chain_id()
    if options.trust is not None:
        pinned = options.trust.chain_id
        _expect(
            claimed == pinned, f"the receipt names chain {claimed}, the trust document {pinned}"
        )
    _expect(actual == claimed, f"the RPC serves chain {actual}, the receipt names {claimed}")
    return f"chain {actual}"


def _gone(chain: ChainView, number: int, block_hash: str) -> str:
    """Why a block the receipt names is not on this chain: reset (or another chain), or a reorg."""
    actual = chain.block_hash(number)
    if actual is None:
        head = chain.block_number()
        return (
            f"this chain has no block {number} (its head is {head}): "
            "a different or reset chain, not a reorg"
        )
    if _same(actual, block_hash):
        return ""
    return f"block {number} is now {actual}: the anchor was reorganised away"


def _registry_pin(options: Options) -> str | None:
    if options.trust is not None:
        return options.trust.registry
    return options.registry


def _submitter(log: ChainLog) -> str:
    return to_checksum_address("0x" + log.topics[2][-40:]) if len(log.topics) >= 3 else ""


def check_transaction(receipt: Receipt, chain: ChainView, options: Options) -> str:
    anchor = receipt["anchor"]
    registry = _registry_pin(options)
    if registry is not None:
        _expect(
            _same(anchor["contract"], registry),
            f"anchored in {anchor['contract']}, not the registry {to_checksum_address(registry)}",
        )
    tx = chain.transaction_receipt(anchor["txHash"])
    if tx is None:
        gone = _gone(chain, anchor["blockNumber"], anchor["blockHash"])
        raise Failed(gone or f"no transaction {anchor['txHash']} in block {anchor['blockNumber']}")
    _expect(tx.status == 1, "the transaction reverted")
    _expect(tx.to is not None and _same(tx.to, anchor["contract"]), f"sent to {tx.to}")
    _expect(tx.block_number == anchor["blockNumber"], f"mined in block {tx.block_number}")
    _expect(_same(tx.block_hash, anchor["blockHash"]), f"mined in block {tx.block_hash}")
    root = anchor["root"].lower()
    logs = [
        log
        for log in tx.logs
        if _same(log.address, anchor["contract"])
        and len(log.topics) >= 3
        and _same(log.topics[0], ANCHORED_TOPIC)
        and _same(log.topics[1], root)
        and int(log.data, 16) == anchor["blockNumber"]
    ]
    _expect(bool(logs), f"the transaction has no Anchored({root}) log from the registry")
    submitter = _submitter(logs[0])
    if options.trust is not None:
        _expect(
            options.trust.writer_ok(submitter, anchor["blockNumber"]),
            f"anchored by {submitter}, not a chain-writer the trust document lists for "
            f"block {anchor['blockNumber']}",
        )
    return f"{anchor['txHash']} emitted Anchored({root}) from {submitter}"


def check_block(receipt: Receipt, chain: ChainView, options: Options) -> str:
    anchor = receipt["anchor"]
    gone = _gone(chain, anchor["blockNumber"], anchor["blockHash"])
    _expect(not gone, gone)
    return f"block {anchor['blockNumber']} is still {anchor['blockHash']}"


def check_registry(receipt: Receipt, chain: ChainView, options: Options) -> str:
    anchor = receipt["anchor"]
    block = chain.anchored_at(anchor["contract"], anchor["root"].lower())
    _expect(block == anchor["blockNumber"], f"anchoredAt(root) is {block}")
    return f"anchoredAt(root) = {block}"


def check_finality(receipt: Receipt, chain: ChainView, options: Options) -> str:
    block = receipt["anchor"]["blockNumber"]
    depth = chain.block_number() - block + 1
    _expect(
        depth >= options.depth,
        f"{_confirmations(depth)}, fewer than the {options.depth} asked for",
    )
    return f"{_confirmations(depth)} (asked for {options.depth})"


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
        reason = "the receipt has no anchor (a proof job not anchored): nothing to look up"
        return [*checks, *(Check(name, SKIP, reason) for name, _ in ONCHAIN)]
    return checks + check_on_chain(receipt, chain, options)


def check_on_chain(receipt: Receipt, chain: ChainView, options: Options) -> list[Check]:
    """Checks 10-14 alone, for a receipt whose `anchor` is an object."""
    return [
        _run(name, partial(check, receipt, chain, options), on_chain=True)
        for name, check in ONCHAIN
    ]


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
        # A node that does not answer (connection refused, an RPC error) establishes nothing
        # either way: the link is unchecked, which is neither a pass nor proof of a forgery.
        return Check(name, UNCHECKED, f"chain RPC failed: {type(exc).__name__}: {exc}")


VALID, INVALID, COULD_NOT_CHECK, UNPINNED = "valid", "invalid", "could not check", "unpinned"


def verdict(checks: list[Check], options: Options) -> str:
    """One word for the whole: a failed check makes it invalid, whatever else happened; then
    an unanswered chain; then a receipt consistent in itself but tied to no installation."""
    outcomes = {check.outcome for check in checks}
    if FAIL in outcomes:
        return INVALID
    if UNCHECKED in outcomes:
        return COULD_NOT_CHECK
    return VALID if options.pinned else UNPINNED
