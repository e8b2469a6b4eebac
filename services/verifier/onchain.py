"""The registry's content records: the lookup port, the JSON-RPC adapter and an in-memory twin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak, to_checksum_address

from anchorline.errors import Retryable

ZERO_ADDRESS = "0x" + "00" * 20


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


CONTENTS_SELECTOR = keccak(text="contents(bytes32)")[:4]
CONTENTS_TYPES = ("address", "uint64", "string")


class RpcContentRegistry:
    """The registry contract's `contents` mapping, read with one `eth_call` per lookup.

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
        call = {"to": self.address, "data": "0x" + (CONTENTS_SELECTOR + content_hash).hex()}
        request = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [call, "latest"]}
        try:
            answer = self.client.post(self.rpc_url, json=request).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise Retryable(f"registry lookup failed: {exc}") from exc
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

    def register(self, content_hash: bytes, creator: str, *, block: int = 1, uri: str = "") -> None:
        self.records[content_hash] = Registration(self.address, creator, block, uri)

    def lookup(self, content_hash: bytes) -> Registration:
        if self.down:
            raise Retryable("registry lookup failed: simulated outage")
        return self.records.get(content_hash, Registration(self.address))
