"""The signed manifest: its canonical form, its validation and its signer."""

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
from eth_utils import (
    is_address,
    is_checksum_address,
    is_checksum_formatted_address,
    to_checksum_address,
)

HASH_RE = re.compile(r"^0x[0-9a-f]{64}$")
SIGNATURE_RE = re.compile(r"^0x[0-9a-fA-F]{130}$")
REQUIRED = ("content_hash", "creator")


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
    """The manifest JSON object, or ValueError saying why it is not one."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"manifest is not JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(document, dict):
        raise ValueError("manifest must be a JSON object")
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
    # eth_utils' is_address no longer checks EIP-55, so a mistyped mixed-case address passed.
    if is_checksum_formatted_address(creator) and not is_checksum_address(creator):
        raise ValueError("creator must be an Ethereum address (its EIP-55 checksum is wrong)")
    if document.get("hash_alg", "sha256") != "sha256":
        raise ValueError("hash_alg must be sha256")
    metadata = document.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be a JSON object")
    for name in ("created_at", "content_uri"):
        if not isinstance(document.get(name, ""), str):
            raise ValueError(f"{name} must be a string")
    return Manifest(
        content_hash=content_hash.lower(),
        creator=to_checksum_address(creator),
        created_at=document.get("created_at"),
        content_uri=document.get("content_uri"),
        metadata=metadata,
    )


def recover_eip191(message: bytes, signature: str) -> str:
    """The checksummed address that personal_signed `message`, or ValueError."""
    if not SIGNATURE_RE.match(signature):
        raise ValueError("signature must be 0x followed by 130 hex digits")
    try:
        return str(Account.recover_message(encode_defunct(primitive=message), signature=signature))
    except Exception as exc:  # eth_keys raises several unrelated types for bad signatures
        raise ValueError(f"signature does not recover: {exc}") from exc


def sign_eip191(document: dict[str, Any], private_key: str) -> str:
    """Sign a manifest the way a creator's wallet does (personal_sign of the canonical bytes)."""
    signed = Account.sign_message(encode_defunct(primitive=canonical_bytes(document)), private_key)
    return "0x" + bytes(signed.signature).hex()


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


def write_signed(path: Path, *, key: str | None, out: Path) -> str:
    """Write out/manifest.json and out/manifest.sig for a file; returns the creator's address."""
    account = Account.from_key(key) if key else Account.create()
    document = describe_file(path, account.address)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_bytes(canonical_bytes(document))
    (out / "manifest.sig").write_text(sign_eip191(document, account.key.hex()))
    return str(account.address)
