"""The registry's content records: the lookup port, the JSON-RPC adapter and an in-memory twin."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak, to_checksum_address

from anchorline.errors import Retryable
from anchorline.untrusted import parse_json

ZERO_ADDRESS = "0x" + "00" * 20
MAX_ANSWER_BYTES = 64 * 1024  # per call: an address, a number and a manifest URI, ABI-encoded
# Calls in one JSON-RPC batch request: hosted nodes refuse larger batches (100 is a common cap).
MAX_BATCH_CALLS = 50


@dataclass(frozen=True)
class Registration:
    """What `AnchorRegistry.contents(contentHash)` says about one content hash."""

    registry: str
    creator: str | None = None
    registered_at: int | None = None
    manifest_uri: str | None = None

    @property
    def registered(self) -> bool:
        return self.creator is not None

    def as_result(self) -> dict[str, Any]:
        return {
            "registered": self.registered,
            "creator": self.creator,
            "registeredAt": self.registered_at,
            "manifestUri": self.manifest_uri,
            "registry": self.registry,
        }


class ContentRegistry(Protocol):
    """Looks a content hash up on chain; raises Retryable when the chain cannot be asked."""

    def lookup(self, content_hash: bytes) -> Registration: ...

    def lookup_many(self, content_hashes: Sequence[bytes]) -> dict[bytes, Registration]: ...

    def close(self) -> None: ...


CONTENTS_SELECTOR = keccak(text="contents(bytes32)")[:4]
CONTENTS_TYPES = ("address", "uint64", "string")


class RpcContentRegistry:
    """The registry contract's `contents` mapping, read with `eth_call` (a poll batch's in one
    JSON-RPC batch request).

    Plain JSON-RPC rather than web3.py: it keeps the verifier process small (web3 alone
    costs it about 12 MiB of resident memory) for one read-only call. One client for the
    registry's life: `httpx.post` built a client and a TLS context (the CA bundle loaded
    again) for every call, about 28 ms of a job's 30.
    """

    def __init__(self, rpc_url: str, address: str, *, timeout_s: float = 10.0) -> None:
        self.rpc_url = rpc_url
        self.address = to_checksum_address(address)
        self.client = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self.client.close()

    def lookup(self, content_hash: bytes) -> Registration:
        try:
            response = self.client.post(self.rpc_url, json=self._call(1, content_hash))
            answer = parse_json(
                response.content, what="the registry's answer", max_bytes=MAX_ANSWER_BYTES
            )
        except (httpx.HTTPError, ValueError) as exc:
            raise Retryable(f"registry lookup failed: {exc}") from exc
        return self._registration(answer)

    def lookup_many(self, content_hashes: Sequence[bytes]) -> dict[bytes, Registration]:
        """Many lookups in JSON-RPC batch requests of up to MAX_BATCH_CALLS. A hash whose
        answer is missing or bad is left out (its job looks it up alone); Retryable if a
        request itself fails."""
        found: dict[bytes, Registration] = {}
        for start in range(0, len(content_hashes), MAX_BATCH_CALLS):
            found |= self._lookup_batch(content_hashes[start : start + MAX_BATCH_CALLS])
        return found

    def _lookup_batch(self, content_hashes: Sequence[bytes]) -> dict[bytes, Registration]:
        calls = [self._call(index, value) for index, value in enumerate(content_hashes)]
        try:
            response = self.client.post(self.rpc_url, json=calls)
            answers = parse_json(
                response.content,
                what="the registry's batch answer",
                max_bytes=MAX_ANSWER_BYTES * len(calls),
            )
        except (httpx.HTTPError, ValueError) as exc:
            raise Retryable(f"registry lookup failed: {exc}") from exc
        if not isinstance(answers, list):
            raise Retryable(f"registry lookup failed: {str(answers)[:200]}")
        found: dict[bytes, Registration] = {}
        for answer in answers:
            index = answer.get("id") if isinstance(answer, dict) else None
            if isinstance(index, int) and 0 <= index < len(content_hashes):
                with contextlib.suppress(Retryable):
                    found[content_hashes[index]] = self._registration(answer)
        return found

    def _call(self, index: int, content_hash: bytes) -> dict[str, Any]:
        call = {"to": self.address, "data": "0x" + (CONTENTS_SELECTOR + content_hash).hex()}
        return {"jsonrpc": "2.0", "id": index, "method": "eth_call", "params": [call, "latest"]}

    def _registration(self, answer: Any) -> Registration:
        result = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(result, str) or len(result) <= 2:
            # A wrong registry address answers "0x" (no code, nothing to decode); retrying, then
            # the dead-letter topic, is the right place for a job while that is fixed.
            problem = answer.get("error") if isinstance(answer, dict) else answer
            raise Retryable(f"registry lookup failed: {problem or 'empty answer'}")
        try:
            creator, registered_at, manifest_uri = abi_decode(
                CONTENTS_TYPES, bytes.fromhex(result.removeprefix("0x"))
            )
        except (ValueError, DecodingError) as exc:
            raise Retryable(f"registry lookup failed: {exc}") from exc
        if creator == ZERO_ADDRESS:
            return Registration(self.address)
        return Registration(
            self.address, to_checksum_address(creator), int(registered_at), str(manifest_uri)
        )


class MemoryContentRegistry:
    """A registry in a dict, for unit tests; `down` makes every lookup fail like a dead node."""

    def __init__(self, *, address: str = "0x" + "22" * 20) -> None:
        self.address = address
        self.records: dict[bytes, Registration] = {}
        self.down = False
        self.lookups = 0
        self.batches = 0
        self.closed = False

    def register(self, content_hash: bytes, creator: str, *, block: int = 1, uri: str = "") -> None:
        self.records[content_hash] = Registration(self.address, creator, block, uri)

    def lookup(self, content_hash: bytes) -> Registration:
        self.lookups += 1
        if self.down:
            raise Retryable("registry lookup failed: simulated outage")
        return self.records.get(content_hash, Registration(self.address))

    def close(self) -> None:
        self.closed = True

    def lookup_many(self, content_hashes: Sequence[bytes]) -> dict[bytes, Registration]:
        self.batches += 1
        if self.down:
            raise Retryable("registry lookup failed: simulated outage")
        return {h: self.records.get(h, Registration(self.address)) for h in content_hashes}
