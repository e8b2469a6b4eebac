"""EIP-712 manifests: the typed data, signing and recovery, checked against a hand-built digest."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from eth_abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from anchorline.proof import manifest
from anchorline.proof.manifest import (
    canonical_bytes,
    metadata_hash,
    recover,
    sign,
    sign_eip712,
    typed_manifest,
    validate,
)

CONTENT = b"typed content"


def document_for(creator: LocalAccount, **changes: Any) -> dict[str, Any]:
    document = {
        "content_hash": "0x" + hashlib.sha256(CONTENT).hexdigest(),
        "creator": creator.address,
        "hash_alg": "sha256",
        "created_at": "2026-01-02T03:04:05Z",
        "content_uri": "ipfs://bafy-example",
        "metadata": {"title": "Été", "tags": ["a", "b"], "pages": 3},
    }
    document.update(changes)
    return document


def key_of(account: LocalAccount) -> str:
    return "0x" + bytes(account.key).hex()


def hand_built_digest(document: dict[str, Any]) -> bytes:
    """docs/receipts.md's recipe, written out with eth_abi only."""
    domain_type = keccak(b"EIP712Domain(string name,string version)")
    domain = keccak(encode(["bytes32"] * 3, [domain_type, keccak(b"anchorline"), keccak(b"1")]))
    manifest_type = keccak(
        b"Manifest(bytes32 contentHash,string hashAlg,address creator,string createdAt,"
        b"string contentUri,bytes32 metadataHash)"
    )
    struct = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "address", "bytes32", "bytes32", "bytes32"],
            [
                manifest_type,
                bytes.fromhex(document["content_hash"][2:]),
                keccak(document.get("hash_alg", "sha256").encode()),
                document["creator"],
                keccak(document.get("created_at", "").encode()),
                keccak(document.get("content_uri", "").encode()),
                keccak(canonical_bytes(document.get("metadata", {}))),
            ],
        )
    )
    return keccak(b"\x19\x01" + domain + struct)


def test_eip712_signature_recovers_the_creator(creator: LocalAccount) -> None:
    document = document_for(creator)
    signature = sign_eip712(document, key_of(creator))
    assert recover(document, signature, scheme="eip712") == creator.address


def test_the_digest_matches_the_documented_recipe(creator: LocalAccount) -> None:
    document = document_for(creator)
    signature = sign_eip712(document, key_of(creator))
    recovered = Account._recover_hash(hand_built_digest(document), signature=signature)
    assert recovered == creator.address


def test_absent_optional_fields_are_signed_as_empty(creator: LocalAccount) -> None:
    document = {"content_hash": "0x" + "ab" * 32, "creator": creator.address}
    signature = sign_eip712(document, key_of(creator))
    recovered = Account._recover_hash(hand_built_digest(document), signature=signature)
    assert recovered == creator.address
    assert typed_manifest(validate(document))["message"]["metadataHash"] == (
        "0x" + keccak(b"{}").hex()
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"content_hash": "0x" + "cd" * 32},
        {"created_at": "2030-01-01T00:00:00Z"},
        {"content_uri": "ipfs://another"},
        {"metadata": {"title": "Été", "tags": ["a", "b"], "pages": 4}},
        {"metadata": {}},
    ],
)
def test_every_field_is_covered(creator: LocalAccount, changes: dict[str, Any]) -> None:
    signature = sign_eip712(document_for(creator), key_of(creator))
    assert recover(document_for(creator, **changes), signature, scheme="eip712") != creator.address


def test_an_eip191_signature_does_not_pass_as_eip712(creator: LocalAccount) -> None:
    document = document_for(creator)
    signature = sign(document, key_of(creator), scheme="eip191")
    assert recover(document, signature, scheme="eip191") == creator.address
    assert recover(document, signature, scheme="eip712") != creator.address


def test_metadata_hash_is_keccak_of_its_canonical_bytes() -> None:
    assert metadata_hash({"b": 1, "a": "x"}) == "0x" + keccak(b'{"a":"x","b":1}').hex()


def test_unknown_scheme_is_refused(creator: LocalAccount) -> None:
    with pytest.raises(ValueError, match="signature_scheme must be one of eip191, eip712"):
        recover(document_for(creator), "0x" + "00" * 65, scheme="eip4361")
    with pytest.raises(ValueError, match="signature_scheme must be one of"):
        sign(document_for(creator), key_of(creator), scheme="rsa")


def test_eip712_of_an_invalid_manifest_does_not_recover(creator: LocalAccount) -> None:
    with pytest.raises(ValueError, match="creator must be an Ethereum address"):
        invalid = {**document_for(creator), "creator": "nobody"}
        recover(invalid, "0x" + "11" * 65, scheme="eip712")


@pytest.mark.parametrize(
    ("metadata", "where"),
    [({"ratio": 0.5}, "manifest.metadata.ratio"), ({"xs": [1, 2.0]}, "manifest.metadata.xs[1]")],
)
def test_fractions_are_refused_so_the_canonical_form_is_portable(
    creator: LocalAccount, metadata: dict[str, Any], where: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{where} is a fraction")):
        validate(document_for(creator, metadata=metadata))


def test_lone_surrogates_are_refused_when_parsed() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        manifest.parse_document('{"creator": "\\ud800"}')


def test_write_signed_with_eip712(tmp_path: Any, creator: LocalAccount) -> None:
    content = tmp_path / "file.txt"
    content.write_bytes(CONTENT)
    address = manifest.write_signed(content, key=key_of(creator), out=tmp_path, scheme="eip712")
    document = manifest.parse_document((tmp_path / "manifest.json").read_text())
    signature = (tmp_path / "manifest.sig").read_text()
    assert address == creator.address
    assert recover(document, signature, scheme="eip712") == creator.address
