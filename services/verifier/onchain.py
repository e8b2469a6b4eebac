"""The registry's content records: the lookup port, the web3 adapter and an in-memory twin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import requests
from web3 import Web3
from web3.exceptions import TimeExhausted, Web3Exception

from anchorline.errors import Retryable
from anchorline.registry import load_artifact

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


TRANSIENT = (requests.RequestException, TimeExhausted, OSError, TimeoutError, Web3Exception)


class Web3ContentRegistry:
    """The registry contract's `contents` mapping through a JSON-RPC endpoint."""

    def __init__(self, rpc_url: str, address: str, *, timeout_s: float = 10.0) -> None:
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))
        self.contract = w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=load_artifact().abi
        )

    def lookup(self, content_hash: bytes) -> Registration:
        try:
            creator, registered_at, manifest_uri = self.contract.functions.contents(
                content_hash
            ).call()
        except TRANSIENT as exc:
            # A wrong registry address also lands here (nothing to decode); retrying, then the
            # dead-letter topic, is the right place for a job while that is fixed.
            raise Retryable(f"registry lookup failed: {exc}") from exc
        if creator == ZERO_ADDRESS:
            return Registration(self.contract.address)
        return Registration(
            self.contract.address,
            Web3.to_checksum_address(creator),
            int(registered_at),
            str(manifest_uri),
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
