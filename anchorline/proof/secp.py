"""keccak256, EIP-55 and secp256k1 recovery and signing, straight on pycryptodome and coincurve.

The verifier recovers a signer and checksums addresses for every job, and the prover signs one
attestation a job. eth_account and eth_utils do the same work under layers of conversions and
checks that cost more than the curve itself (one EIP-191 recovery: 80 µs through
`Account.recover_message`, 30 through coincurve; one checksum: 14 µs through eth_utils, 4 here).
Only well-formed input takes these paths; callers send anything else to eth_account, whose
answers and errors stay the reference (tests/unit/test_secp.py compares the two).
"""

from __future__ import annotations

import re
from functools import lru_cache

import coincurve
from Crypto.Hash import keccak as _keccak

ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
SIGNATURE_RE = re.compile(r"0x[0-9a-fA-F]{130}")
EIP191_PREFIX = b"\x19Ethereum Signed Message:\n"


def keccak256(data: bytes) -> bytes:
    return _keccak.new(digest_bits=256, data=data).digest()


@lru_cache(maxsize=4096)  # a job's creator is checksummed three times; creators recur
def checksum_address(address: str) -> str:
    """The EIP-55 form of a 0x-prefixed, 40-hex-digit address; ValueError for anything else."""
    if not isinstance(address, str) or not ADDRESS_RE.fullmatch(address):
        raise ValueError(f"not a 0x-prefixed 40-hex-digit address: {address!r:.60}")
    lower = address[2:].lower()
    nibbles = keccak256(lower.encode("ascii")).hex()[:40]
    return "0x" + "".join(
        c.upper() if n in "89abcdef" else c for c, n in zip(lower, nibbles, strict=True)
    )


def address_of(public_key: coincurve.PublicKey) -> str:
    """The checksummed address of a public key: the last 20 bytes of keccak256(x ‖ y)."""
    return checksum_address("0x" + keccak256(public_key.format(compressed=False)[1:])[-20:].hex())


def eip191_digest(message: bytes) -> bytes:
    """What personal_sign signs: keccak256 of the prefixed message."""
    return keccak256(EIP191_PREFIX + str(len(message)).encode() + message)


def signature_bytes(signature: object) -> bytes | None:
    """The 65 bytes of a signature written as 0x and exactly 130 hex digits (nothing after
    them, not even a newline, which bytes.fromhex would skip); None for anything else."""
    if not isinstance(signature, str) or not SIGNATURE_RE.fullmatch(signature):
        return None
    return bytes.fromhex(signature[2:])


def recover(digest: bytes, signature: bytes) -> str | None:
    """The address whose key signed the 32-byte `digest`, for a 65-byte r ‖ s ‖ v signature with
    v 27 or 28; None for any other v, or a signature the curve refuses (the caller then asks
    eth_account, whose error message says why)."""
    if len(digest) != 32 or len(signature) != 65 or signature[64] not in (27, 28):
        return None
    try:
        key = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([signature[64] - 27]), digest, hasher=None
        )
    except Exception:  # coincurve raises ValueError or its own types for an unusable signature
        return None
    return address_of(key)


class Signer:
    """One private key, parsed once, signing 32-byte digests as Ethereum does (RFC 6979, low s,
    v 27/28): the same bytes eth_account's `unsafe_sign_hash` gives."""

    def __init__(self, private_key: bytes) -> None:
        self.key_bytes = private_key
        self._key = coincurve.PrivateKey(private_key)
        self.address = address_of(self._key.public_key)

    def sign(self, digest: bytes) -> bytes:
        signature = self._key.sign_recoverable(digest, hasher=None)
        return signature[:64] + bytes([signature[64] + 27])
