"""EIP-712 typed data: the domain anchorline signs under, signing and recovery."""

from __future__ import annotations

import re
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.datatypes import PrivateKey

from anchorline.proof import secp

DOMAIN_NAME = "anchorline"
DOMAIN_VERSION = "1"
TypedData = dict[str, Any]
DOMAIN_TYPE = "EIP712Domain"
BYTES32_RE = re.compile(r"0x[0-9a-fA-F]{64}")


DOMAIN_FIELDS = [{"name": "name", "type": "string"}, {"name": "version", "type": "string"}]
CHAIN_ID_FIELD = {"name": "chainId", "type": "uint256"}


def domain(*, chain_id: int | None = None) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The EIP712Domain fields and values: name and version, and chainId when it is known."""
    fields = [dict(field) for field in DOMAIN_FIELDS]
    values: dict[str, Any] = {"name": DOMAIN_NAME, "version": DOMAIN_VERSION}
    if chain_id is not None:
        fields.append(dict(CHAIN_ID_FIELD))
        values["chainId"] = chain_id
    return fields, values


def typed_data(
    primary_type: str,
    fields: list[dict[str, str]],
    message: dict[str, Any],
    *,
    chain_id: int | None = None,
) -> TypedData:
    """The complete typed-data document (the JSON a wallet's eth_signTypedData_v4 takes)."""
    domain_fields, domain_values = domain(chain_id=chain_id)
    return {
        "types": {"EIP712Domain": domain_fields, primary_type: fields},
        "primaryType": primary_type,
        "domain": domain_values,
        "message": message,
    }


def sign(document: TypedData, private_key: str | PrivateKey | secp.Signer) -> str:
    """The signature, 0x hex; a `secp.Signer` (or a `PrivateKey`) spares parsing the key and
    deriving its public key each time."""
    key: str | bytes | PrivateKey
    if isinstance(private_key, secp.Signer):
        if (digest := flat_digest(document)) is not None:
            return "0x" + private_key.sign(digest).hex()
        key = private_key.key_bytes
    else:
        key = private_key
    signed = Account.sign_message(encode_typed_data(full_message=document), key)
    return "0x" + bytes(signed.signature).hex()


def recover(document: TypedData, signature: str) -> str:
    """The checksummed address that signed `document`, or ValueError."""
    digest, written = flat_digest(document), secp.signature_bytes(signature)
    signer = secp.recover(digest, written) if digest and written else None
    if signer is not None:
        return signer
    try:
        signable = encode_typed_data(full_message=document)
        return str(Account.recover_message(signable, signature=signature))
    except Exception as exc:  # eth_account and eth_keys raise many unrelated types
        raise ValueError(f"typed-data signature does not recover: {exc}") from exc


def flat_digest(document: TypedData) -> bytes | None:
    """The EIP-712 digest of a document whose primary type and domain are flat structs of
    string, bytes32 (exactly 32 bytes), address and uint256 fields, written exactly so (as
    anchorline's attestations and manifests are): what `encode_typed_data` hashes, without its
    general machinery. None for anything else, which goes to eth_account."""
    try:
        types, primary = document["types"], document["primaryType"]
        if set(types) != {DOMAIN_TYPE, primary} or primary == DOMAIN_TYPE:
            return None
        # eth_account derives the domain's type from its values, in its own order: only the
        # domains anchorline writes are hashed here.
        if types[DOMAIN_TYPE] not in (DOMAIN_FIELDS, [*DOMAIN_FIELDS, CHAIN_ID_FIELD]):
            return None
        domain_hash = _struct_hash(DOMAIN_TYPE, types[DOMAIN_TYPE], document["domain"])
        message_hash = _struct_hash(primary, types[primary], document["message"])
    except (KeyError, TypeError, AttributeError, UnicodeEncodeError):
        return None
    if domain_hash is None or message_hash is None:
        return None
    return secp.keccak256(b"\x19\x01" + domain_hash + message_hash)


def _struct_hash(name: str, fields: Any, values: Any) -> bytes | None:
    if not isinstance(fields, list) or not isinstance(values, dict):
        return None
    names = [field["name"] for field in fields]
    if len(set(names)) != len(names) or set(names) != set(values):
        return None
    signature = f"{name}(" + ",".join(f"{f['type']} {f['name']}" for f in fields) + ")"
    encoded = [secp.keccak256(signature.encode())]
    for field in fields:
        word = _word(field["type"], values[field["name"]])
        if word is None:
            return None
        encoded.append(word)
    return secp.keccak256(b"".join(encoded))


def _word(kind: str, value: Any) -> bytes | None:
    """One atomic value's 32-byte encoding, or None if it is not written in its one exact form."""
    if kind == "string" and isinstance(value, str):
        return secp.keccak256(value.encode("utf-8"))
    if kind == "bytes32" and isinstance(value, str) and BYTES32_RE.fullmatch(value):
        return bytes.fromhex(value[2:])
    if kind == "address" and isinstance(value, str) and secp.ADDRESS_RE.fullmatch(value):
        mixed = value[2:] not in (value[2:].lower(), value[2:].upper())
        if mixed and secp.checksum_address(value) != value:
            return None  # eth_account decides what a wrong checksum means
        return bytes(12) + bytes.fromhex(value[2:])
    if kind == "uint256" and type(value) is int and 0 <= value < 1 << 256:
        return value.to_bytes(32, "big")
    return None
