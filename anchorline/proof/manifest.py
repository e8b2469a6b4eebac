"""The signed manifest: its canonical form, its validation and its signer (EIP-191 or EIP-712)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_address, is_checksum_formatted_address, keccak

from anchorline.errors import BadInput
from anchorline.proof import eip712, secp
from anchorline.untrusted import parse_json

# The gateway's limit too: a manifest is a few hundred bytes of hashes, an address and labels.
MAX_BYTES = 64 * 1024
HASH_RE = re.compile(r"^0x[0-9a-f]{64}$")
SIGNATURE_RE = secp.SIGNATURE_RE  # 0x and exactly 130 hex digits: fullmatch, no trailing newline
REQUIRED = ("content_hash", "creator")
SCHEMES = ("eip191", "eip712")
MANIFEST_TYPE = "Manifest"
MANIFEST_FIELDS = [
    {"name": "contentHash", "type": "bytes32"},
    {"name": "hashAlg", "type": "string"},
    {"name": "creator", "type": "address"},
    {"name": "createdAt", "type": "string"},
    {"name": "contentUri", "type": "string"},
    {"name": "metadataHash", "type": "bytes32"},
]


@dataclass(frozen=True)
class Manifest:
    content_hash: str
    creator: str
    hash_alg: str = "sha256"
    created_at: str | None = None
    content_uri: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes that are signed and hashed."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return "0x" + hashlib.sha256(data).hexdigest()


def parse_document(text: str) -> dict[str, Any]:
    """The manifest JSON object, or ValueError (BadInput) saying why it is not one."""
    document = parse_json(text, what="manifest", max_bytes=MAX_BYTES)
    if not isinstance(document, dict):
        raise BadInput("manifest must be a JSON object")
    return document


def validate(document: dict[str, Any]) -> Manifest:
    """A Manifest, or ValueError naming the first field that is wrong."""
    missing = [name for name in REQUIRED if name not in document]
    if missing:
        raise ValueError(f"manifest lacks {', '.join(missing)}")
    content_hash = document["content_hash"]
    if not isinstance(content_hash, str) or not HASH_RE.match(content_hash.lower()):
        raise ValueError("content_hash must be 0x followed by 64 hex digits")
    creator = document["creator"]
    if not isinstance(creator, str) or not is_address(creator):
        raise ValueError("creator must be an Ethereum address")
    checksummed = _checksummed(creator)
    # eth_utils' is_address no longer checks EIP-55, so a mistyped mixed-case address passed.
    if is_checksum_formatted_address(creator) and creator[-40:] != checksummed[2:]:
        raise ValueError("creator must be an Ethereum address (its EIP-55 checksum is wrong)")
    if document.get("hash_alg", "sha256") != "sha256":
        raise ValueError("hash_alg must be sha256")
    metadata = document.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be a JSON object")
    for name in ("created_at", "content_uri"):
        if not isinstance(document.get(name, ""), str):
            raise ValueError(f"{name} must be a string")
    _integers_only(document, "manifest")
    return Manifest(
        content_hash=content_hash.lower(),
        creator=checksummed,
        created_at=document.get("created_at"),
        content_uri=document.get("content_uri"),
        metadata=metadata,
    )


def _checksummed(address: str) -> str:
    """EIP-55 of an address is_address took: 40 hex digits, after 0x, 0X or nothing."""
    return secp.checksum_address("0x" + address[-40:])


def _integers_only(value: Any, where: str) -> None:
    # Fractions have no single canonical JSON text across languages; integers and strings do.
    if isinstance(value, float):
        raise ValueError(f"{where} is a fraction; a manifest holds integers only (quote fractions)")
    if isinstance(value, dict):
        for key, item in value.items():
            _integers_only(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _integers_only(item, f"{where}[{index}]")


def metadata_hash(metadata: dict[str, Any]) -> str:
    """keccak256 of the metadata's canonical bytes: how EIP-712 covers the free-form part."""
    return "0x" + keccak(canonical_bytes(metadata)).hex()


def typed_manifest(manifest: Manifest) -> eip712.TypedData:
    """The EIP-712 typed data a creator signs for a manifest; an absent created_at or content_uri
    is signed as "", and hashAlg is always sha256 (the only one a valid manifest has)."""
    message = {
        "contentHash": manifest.content_hash,
        "hashAlg": manifest.hash_alg,
        "creator": manifest.creator,
        "createdAt": manifest.created_at or "",
        "contentUri": manifest.content_uri or "",
        "metadataHash": metadata_hash(manifest.metadata),
    }
    return eip712.typed_data(MANIFEST_TYPE, MANIFEST_FIELDS, message)


def recover(document: dict[str, Any], signature: str, *, scheme: str = "eip191") -> str:
    """The checksummed address that signed the manifest under `scheme`, or ValueError."""
    if scheme == "eip191":
        return recover_eip191(canonical_bytes(document), signature)
    if scheme != "eip712":
        raise ValueError(f"signature_scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    if not SIGNATURE_RE.fullmatch(signature):
        raise ValueError("signature must be 0x followed by 130 hex digits")
    return eip712.recover(typed_manifest(validate(document)), signature)


def signature_v(signature: str) -> int:
    """The v byte of a 65-byte r ‖ s ‖ v signature written as 0x hex, or ValueError."""
    if not isinstance(signature, str) or not SIGNATURE_RE.fullmatch(signature):
        raise ValueError("signature must be 0x followed by 130 hex digits")
    return int(signature[-2:], 16)


def normalized_signature(signature: str) -> str:
    """The same signature with v = 0/1 (as some wallets write it) as 27/28; else unchanged."""
    try:
        v = signature_v(signature)
    except ValueError:
        return signature
    return signature[:-2] + f"{v + 27:02x}" if v in (0, 1) else signature


def recover_eip191(message: bytes, signature: str) -> str:
    """The checksummed address that personal_signed `message`, or ValueError."""
    written = secp.signature_bytes(signature)
    if written is None:
        raise ValueError("signature must be 0x followed by 130 hex digits")
    signer = secp.recover(secp.eip191_digest(message), written)
    if signer is not None:
        return signer
    try:  # v other than 27/28, or a signature the curve refuses: eth_account's answer and reason
        return str(Account.recover_message(encode_defunct(primitive=message), signature=signature))
    except Exception as exc:  # eth_keys raises several unrelated types for bad signatures
        raise ValueError(f"signature does not recover: {exc}") from exc


def sign_eip191(document: dict[str, Any], private_key: str) -> str:
    """Sign a manifest the way a creator's wallet does (personal_sign of the canonical bytes)."""
    signed = Account.sign_message(encode_defunct(primitive=canonical_bytes(document)), private_key)
    return "0x" + bytes(signed.signature).hex()


def sign_eip712(document: dict[str, Any], private_key: str) -> str:
    """Sign a manifest as EIP-712 typed data (eth_signTypedData_v4 of typed_manifest)."""
    return eip712.sign(typed_manifest(validate(document)), private_key)


def sign(document: dict[str, Any], private_key: str, *, scheme: str = "eip191") -> str:
    if scheme == "eip712":
        return sign_eip712(document, private_key)
    if scheme != "eip191":
        raise ValueError(f"signature_scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    return sign_eip191(document, private_key)


def describe_file(path: Path, creator: str) -> dict[str, Any]:
    """A manifest for a local file, its hash computed in fixed memory."""
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return {
        "content_hash": "0x" + hasher.hexdigest(),
        "creator": creator,
        "hash_alg": "sha256",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "metadata": {"filename": path.name},
    }


def write_signed(path: Path, *, key: str | None, out: Path, scheme: str = "eip191") -> str:
    """Write out/manifest.json and out/manifest.sig for a file; returns the creator's address."""
    account = Account.from_key(key) if key else Account.create()
    document = describe_file(path, account.address)
    signature = sign(document, account.key.hex(), scheme=scheme)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_bytes(canonical_bytes(document))
    (out / "manifest.sig").write_text(signature)
    return str(account.address)
