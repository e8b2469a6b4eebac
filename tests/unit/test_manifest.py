from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_keys import keys
from eth_utils import keccak

from anchorline.proof import manifest
from anchorline.proof.manifest import (
    canonical_bytes,
    parse_document,
    recover_eip191,
    sha256_hex,
    sign_eip191,
    validate,
)

SignManifest = Callable[..., Any]
ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
HASH = "0x" + "ab" * 32


def test_canonical_bytes_sort_keys_drop_whitespace_and_keep_utf8() -> None:
    document = {"b": [1, 2], "a": "é", "c": {"z": None, "y": True}}
    assert canonical_bytes(document) == '{"a":"é","b":[1,2],"c":{"y":true,"z":null}}'.encode()


def test_canonical_bytes_do_not_depend_on_key_order() -> None:
    assert canonical_bytes({"x": 1, "y": 2}) == canonical_bytes({"y": 2, "x": 1})


def test_sha256_hex_is_0x_and_lowercase_hex() -> None:
    assert sha256_hex(b"abc") == "0x" + hashlib.sha256(b"abc").hexdigest()


def test_parse_document_rejects_text_that_is_not_json() -> None:
    with pytest.raises(ValueError, match="manifest is not JSON"):
        parse_document("{not json")


@pytest.mark.parametrize("text", ["[]", '"a string"', "42", "null"])
def test_parse_document_rejects_json_that_is_not_an_object(text: str) -> None:
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_document(text)


def test_parse_document_returns_the_object() -> None:
    assert parse_document('{"creator": "x"}') == {"creator": "x"}


def test_validate_normalizes_hash_case_and_checksums_the_creator() -> None:
    parsed = validate(
        {
            "content_hash": HASH.upper().replace("0X", "0x"),
            "creator": ADDRESS.lower(),
            "created_at": "2024-05-01T00:00:00Z",
            "metadata": {"title": "t"},
        }
    )
    assert parsed.content_hash == HASH
    assert parsed.creator == ADDRESS
    assert parsed.created_at == "2024-05-01T00:00:00Z"
    assert parsed.metadata == {"title": "t"}
    assert parsed.hash_alg == "sha256"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"content_hash": None, "creator": None}, "lacks content_hash, creator"),
        ({"creator": None}, "lacks creator"),
        ({"content_hash": "ab" * 32}, "content_hash must be"),
        ({"content_hash": "0x" + "ab" * 31}, "content_hash must be"),
        ({"content_hash": "0x" + "zz" * 32}, "content_hash must be"),
        ({"content_hash": 7}, "content_hash must be"),
        ({"creator": "0x1234"}, "creator must be an Ethereum address"),
        ({"creator": ADDRESS.replace("a", "A", 1)}, "creator must be an Ethereum address"),
        ({"hash_alg": "md5"}, "hash_alg must be sha256"),
        ({"metadata": ["x"]}, "metadata must be a JSON object"),
        ({"created_at": 1714521600}, "created_at must be a string"),
        ({"content_uri": {"u": 1}}, "content_uri must be a string"),
    ],
)
def test_validate_names_what_is_wrong(changes: dict[str, Any], message: str) -> None:
    document = {"content_hash": HASH, "creator": ADDRESS}
    document.update(changes)
    document = {k: v for k, v in document.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        validate(document)


def test_signature_recovers_the_signer(creator: LocalAccount) -> None:
    document = {"content_hash": HASH, "creator": creator.address}
    signature = sign_eip191(document, "0x" + bytes(creator.key).hex())
    assert manifest.SIGNATURE_RE.match(signature)
    assert recover_eip191(canonical_bytes(document), signature) == creator.address


def test_signature_is_an_eip191_personal_sign_of_the_canonical_bytes(
    sign_manifest: SignManifest, creator: LocalAccount
) -> None:
    signed = sign_manifest()
    message = canonical_bytes(signed.document)
    digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(message)).encode() + message)
    raw = bytes.fromhex(signed.signature.removeprefix("0x"))
    assert raw[64] in (27, 28)
    public = keys.Signature(raw[:64] + bytes([raw[64] - 27])).recover_public_key_from_msg_hash(
        digest
    )
    assert public.to_checksum_address() == creator.address


def test_a_changed_document_recovers_someone_else(sign_manifest: SignManifest) -> None:
    signed = sign_manifest()
    tampered = {**signed.document, "content_hash": HASH}
    recovered = recover_eip191(canonical_bytes(tampered), signed.signature)
    assert recovered != signed.document["creator"]


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "0x",
        "0x1234",
        "11" * 65,
        "0x" + "11" * 64,
        "0x" + "g1" * 65,
        "0x" + "11" * 66,
        "0x" + "11" * 65 + "\n",  # `$` let a trailing newline through
    ],
)
def test_malformed_signature_is_a_value_error(signature: str) -> None:
    with pytest.raises(ValueError, match="signature must be 0x followed by 130 hex digits"):
        recover_eip191(b"{}", signature)


@pytest.mark.parametrize("signature", ["0x" + "00" * 65, "0x" + "ff" * 65, "0x" + "11" * 64 + "1b"])
def test_well_formed_signature_that_does_not_recover_is_a_value_error(signature: str) -> None:
    with pytest.raises(ValueError, match="signature does not recover"):
        recover_eip191(b"{}", signature)


def test_parse_document_refuses_deep_nesting_without_recursing() -> None:
    deep = '{"metadata": ' + "[" * 30_000 + "]" * 30_000 + "}"
    with pytest.raises(ValueError, match="manifest nests deeper than 32 levels"):
        parse_document(deep)


def test_parse_document_refuses_a_manifest_over_its_size_limit() -> None:
    huge = '{"metadata": "' + "x" * manifest.MAX_BYTES + '"}'
    with pytest.raises(ValueError, match=f"manifest is larger than {manifest.MAX_BYTES} bytes"):
        parse_document(huge)
