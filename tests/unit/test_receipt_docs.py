"""docs/receipts.md: its type hashes, topic and test vectors are what the code computes."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from web3 import Web3

from anchorline.paths import ROOT
from anchorline.proof.attestation import ATTESTATION_FIELDS, AttestedFacts, Attester
from anchorline.proof.chainview import ANCHORED_TOPIC
from anchorline.proof.manifest import (
    MANIFEST_FIELDS,
    canonical_bytes,
    metadata_hash,
    recover,
    recover_eip191,
    sha256_hex,
    sign_eip191,
    sign_eip712,
    typed_manifest,
    validate,
)
from anchorline.proof.merkle import MerkleBatch, ProofStep, leaf_hash, node_hash, root_from_path
from anchorline.proof.registry import load_artifact

DOC = (ROOT / "docs" / "receipts.md").read_text()
KEY = "0x" + "11" * 32
CONTENT = b"hello, anchorline\n"
JOB_ID = "00000000-0000-4000-8000-000000000001"


def type_string(name: str, fields: list[dict[str, str]]) -> str:
    return f"{name}({','.join(f['type'] + ' ' + f['name'] for f in fields)})"


def hex_of(data: bytes) -> str:
    return "0x" + data.hex()


PROVER_KEY = "0x" + "44" * 32
WRITER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
ANCHOR_BLOCK = 7
SIBLINGS = (b"\x33" * 32, b"\x55" * 32)


def manifest_document() -> dict[str, object]:
    return {
        "content_hash": sha256_hex(CONTENT),
        "creator": Account.from_key(KEY).address,
        "hash_alg": "sha256",
        "created_at": "2026-01-01T00:00:00Z",
        "metadata": {"title": "Été"},
    }


def eip191_digest(message: bytes) -> bytes:
    # Spelled out from the document's formula, not taken from a library.
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(message)).encode() + message)


def vectors() -> dict[str, str]:
    """Every row of the document's test vector table, computed by anchorline's code."""
    document = manifest_document()
    canonical = canonical_bytes(document)
    signable = encode_typed_data(full_message=typed_manifest(validate(document)))
    creator = Account.from_key(KEY).address
    facts = AttestedFacts(
        job_id=JOB_ID,
        content_sha256=sha256_hex(CONTENT),
        manifest_sha256=sha256_hex(canonical),
        signer=creator,
        commitment="",
        leaf="",
    )
    commitment = keccak(
        canonical_bytes(
            {
                "job_id": JOB_ID,
                "content_sha256": facts.content_sha256,
                "manifest_sha256": facts.manifest_sha256,
                "signer": creator,
            }
        )
    )
    leaf = leaf_hash(b"\x22" * 32, commitment)
    facts = replace(facts, commitment=hex_of(commitment), leaf=hex_of(leaf))
    attestation = Attester(PROVER_KEY, chain_id=31337).attest(facts)
    attested = encode_typed_data(full_message=attestation.typed_data)
    batch = MerkleBatch.build([leaf, *SIBLINGS])
    root = batch.root
    return {
        "content sha256": sha256_hex(CONTENT),
        "manifest canonical": canonical.decode(),
        "manifest sha256": sha256_hex(canonical),
        "EIP-191 digest of the manifest": hex_of(eip191_digest(canonical)),
        "EIP-191 signature (r ‖ s ‖ v)": sign_eip191(document, KEY),
        "metadataHash": metadata_hash(document["metadata"]),  # type: ignore[arg-type]
        "EIP-712 domain separator (no chainId)": hex_of(signable.header),
        "hashStruct(Manifest)": hex_of(signable.body),
        "EIP-712 digest": hex_of(keccak(b"\x19\x01" + signable.header + signable.body)),
        "EIP-712 signature (r ‖ s ‖ v)": sign_eip712(document, KEY),
        "job id": JOB_ID,
        "commitment": hex_of(commitment),
        "leaf, salt = 32 bytes of `0x22`": hex_of(leaf),
        'root, one step `{"position": "right", "hash": 32 bytes of 0x33}`': hex_of(
            node_hash(leaf, SIBLINGS[0])
        ),
        "prover address (key: 32 bytes of `0x44`)": attestation.prover,
        "attestation domain separator (chainId 31337)": hex_of(attested.header),
        "hashStruct(Attestation)": hex_of(attested.body),
        "attestation digest": hex_of(keccak(b"\x19\x01" + attested.header + attested.body)),
        "attestation signature (r ‖ s ‖ v)": attestation.signature,
        "batch root of [leaf, 32 bytes of `0x33`, 32 bytes of `0x55`]": hex_of(root),
        "its path for index 0: step 1 right, hash": hex_of(SIBLINGS[0]),
        "its path for index 0: step 2 right, hash": hex_of(SIBLINGS[1]),
        "its path for index 2: its only step, left, hash": hex_of(node_hash(leaf, SIBLINGS[0])),
        "Anchored log of that root by `0xf39F…2266` in block 7: topic0": ANCHORED_TOPIC,
        "its topic1 (the root)": hex_of(root),
        "its topic2 (the submitter)": hex_of(bytes(12) + bytes.fromhex(WRITER[2:])),
        "its data (the block number)": hex_of(ANCHOR_BLOCK.to_bytes(32, "big")),
        "eth_call data of anchoredAt(that root)": anchored_at_call(root),
        "its answer once anchored in block 7": hex_of(ANCHOR_BLOCK.to_bytes(32, "big")),
    }


def anchored_at_call(root: bytes) -> str:
    contract = Web3().eth.contract(abi=load_artifact().abi)
    return str(contract.encode_abi("anchoredAt", args=[root]))


def table() -> dict[str, str]:
    """The rows of the document's test vector table: label → value."""
    section = DOC[DOC.index("## Test vectors") :]
    rows = re.findall(r"^\| (.+?) \| `([^`]+)` \|$", section, flags=re.MULTILINE)
    return dict(rows)


def test_the_document_has_every_vector_and_no_other() -> None:
    assert sorted(table()) == sorted(vectors())


@pytest.mark.parametrize(("name", "value"), sorted(vectors().items()))
def test_each_vector_is_what_the_code_computes(name: str, value: str) -> None:
    assert table().get(name) == value, name


def test_the_vector_signatures_recover_and_the_paths_fold() -> None:
    document, creator = manifest_document(), Account.from_key(KEY).address
    rows = table()
    canonical = rows["manifest canonical"].encode()
    assert recover_eip191(canonical, rows["EIP-191 signature (r ‖ s ‖ v)"]) == creator
    assert recover(document, rows["EIP-712 signature (r ‖ s ‖ v)"], scheme="eip712") == creator
    leaf = bytes.fromhex(rows["leaf, salt = 32 bytes of `0x22`"][2:])
    root = bytes.fromhex(rows["batch root of [leaf, 32 bytes of `0x33`, 32 bytes of `0x55`]"][2:])
    left = bytes.fromhex(rows["its path for index 2: its only step, left, hash"][2:])
    assert root_from_path(leaf, [ProofStep(s, False) for s in SIBLINGS]) == root
    assert root_from_path(b"\x55" * 32, [ProofStep(left, True)]) == root
    assert [step.sibling for step in MerkleBatch.build([leaf, *SIBLINGS]).path(2)] == [left]


def test_the_type_strings_and_their_hashes_are_in_the_document() -> None:
    for text in (
        type_string("Manifest", MANIFEST_FIELDS),
        type_string("Attestation", ATTESTATION_FIELDS),
        "EIP712Domain(string name,string version)",
        "EIP712Domain(string name,string version,uint256 chainId)",
    ):
        assert text in DOC
        assert f"`{hex_of(keccak(text.encode()))}`" in DOC, text


def test_the_anchored_topic_is_in_the_document() -> None:
    assert ANCHORED_TOPIC in DOC
    assert hashlib.sha256(CONTENT).hexdigest() in DOC
