"""docs/receipts.md: its type hashes, topic and test vectors are what the code computes."""

from __future__ import annotations

import hashlib

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from anchorline.paths import ROOT
from anchorline.proof.attestation import ATTESTATION_FIELDS
from anchorline.proof.chainview import ANCHORED_TOPIC
from anchorline.proof.manifest import (
    MANIFEST_FIELDS,
    canonical_bytes,
    metadata_hash,
    sha256_hex,
    typed_manifest,
    validate,
)
from anchorline.proof.merkle import leaf_hash, node_hash

DOC = (ROOT / "docs" / "receipts.md").read_text()
KEY = "0x" + "11" * 32
CONTENT = b"hello, anchorline\n"
JOB_ID = "00000000-0000-4000-8000-000000000001"


def type_string(name: str, fields: list[dict[str, str]]) -> str:
    return f"{name}({','.join(f['type'] + ' ' + f['name'] for f in fields)})"


def hex_of(data: bytes) -> str:
    return "0x" + data.hex()


def vectors() -> dict[str, str]:
    creator = Account.from_key(KEY).address
    document = {
        "content_hash": sha256_hex(CONTENT),
        "creator": creator,
        "hash_alg": "sha256",
        "created_at": "2026-01-01T00:00:00Z",
        "metadata": {"title": "Été"},
    }
    canonical = canonical_bytes(document)
    signable = encode_typed_data(full_message=typed_manifest(validate(document)))
    facts = {
        "job_id": JOB_ID,
        "content_sha256": sha256_hex(CONTENT),
        "manifest_sha256": sha256_hex(canonical),
        "signer": creator,
    }
    commitment = keccak(canonical_bytes(facts))
    leaf = leaf_hash(b"\x22" * 32, commitment)
    return {
        "creator": creator,
        "content": sha256_hex(CONTENT),
        "canonical": canonical.decode(),
        "manifest": sha256_hex(canonical),
        "metadata": metadata_hash(document["metadata"]),  # type: ignore[arg-type]
        "domain": hex_of(signable.header),
        "struct": hex_of(signable.body),
        "digest": hex_of(keccak(b"\x19\x01" + signable.header + signable.body)),
        "commitment": hex_of(commitment),
        "leaf": hex_of(leaf),
        "root": hex_of(node_hash(leaf, b"\x33" * 32)),
    }


@pytest.mark.parametrize(("name", "value"), sorted(vectors().items()))
def test_each_vector_is_in_the_document(name: str, value: str) -> None:
    assert f"`{value}`" in DOC, name


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
