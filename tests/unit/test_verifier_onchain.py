"""The registry's batch lookup reads each answer of a JSON-RPC batch on its own."""

from __future__ import annotations

import json

import httpx
import pytest
from eth_abi import encode as abi_encode

from anchorline.errors import Retryable
from anchorline_verifier.onchain import MAX_BATCH_CALLS, RpcContentRegistry

REGISTRY = "0x" + "22" * 20
CREATOR = "0x" + "33" * 20


def node(answer: object) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, content=json.dumps(answer)))


def registry_answering(answer: object) -> RpcContentRegistry:
    registry = RpcContentRegistry("http://node.invalid", REGISTRY)
    registry.client = httpx.Client(transport=node(answer))
    return registry


def encoded(creator: str, block: int, uri: str) -> str:
    return "0x" + abi_encode(["address", "uint64", "string"], [creator, block, uri]).hex()


def test_a_bad_answer_for_one_hash_leaves_out_that_hash_alone() -> None:
    first, second, third = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    registry = registry_answering(
        [
            {"jsonrpc": "2.0", "id": 2, "result": "0x"},  # nothing to decode
            {"jsonrpc": "2.0", "id": 0, "result": encoded(CREATOR, 9, "ipfs://a")},
            {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "busy"}},
            {"jsonrpc": "2.0", "id": 7, "result": encoded(CREATOR, 9, "ipfs://x")},
        ]
    )
    found = registry.lookup_many([first, second, third])
    assert list(found) == [first]
    assert (found[first].registered_at, found[first].manifest_uri) == (9, "ipfs://a")


@pytest.mark.parametrize("answer", [{"error": "no batches here"}, "nonsense", "x" * 70_000])
def test_an_answer_that_is_not_a_batch_is_retryable(answer: object) -> None:
    registry = registry_answering(answer)
    with pytest.raises(Retryable, match="registry lookup failed"):
        registry.lookup_many([b"\x01" * 32])


def test_a_long_lookup_goes_in_batches_a_hosted_node_accepts() -> None:
    sizes: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls = json.loads(request.content)
        sizes.append(len(calls))
        found = [
            {"jsonrpc": "2.0", "id": call["id"], "result": encoded(CREATOR, 9, "ipfs://a")}
            for call in calls
        ]
        return httpx.Response(200, content=json.dumps(found))

    registry = RpcContentRegistry("http://node.invalid", REGISTRY)
    registry.client = httpx.Client(transport=httpx.MockTransport(answer))
    hashes = [index.to_bytes(32, "big") for index in range(2 * MAX_BATCH_CALLS + 3)]
    found = registry.lookup_many(hashes)
    assert sizes == [MAX_BATCH_CALLS, MAX_BATCH_CALLS, 3]
    assert sorted(found) == sorted(hashes)


def test_no_hashes_no_request() -> None:
    registry = registry_answering("never asked")
    assert registry.lookup_many([]) == {}
