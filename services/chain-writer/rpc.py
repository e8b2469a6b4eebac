"""JSON-RPC over HTTP that keeps to a rate limit and stays off a node that keeps failing."""

from __future__ import annotations

from typing import Any

from web3 import HTTPProvider
from web3.types import RPCEndpoint, RPCResponse

from anchorline_chain_writer.breaker import CircuitBreaker
from anchorline_chain_writer.ratelimit import TokenBucket

SEND_METHODS = frozenset({"eth_sendRawTransaction", "eth_sendTransaction"})


class GuardedHTTPProvider(HTTPProvider):
    """Every request waits for a token of `calls` (and of `sends` for a transaction) and
    goes out only if `breaker` allows it. A request that gets no JSON-RPC answer (refused,
    timed out, HTTP error, garbage) counts as a failure; any answer, even an error, as a
    success. web3's own retries are off so that the breaker sees every failure."""

    def __init__(
        self,
        url: str,
        *,
        breaker: CircuitBreaker,
        calls: TokenBucket,
        sends: TokenBucket,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(
            url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None
        )
        self.breaker = breaker
        self.calls = calls
        self.sends = sends
        self.requests_made = 0

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        self.breaker.before_call()
        self.calls.take()
        if method in SEND_METHODS:
            self.sends.take()
        self.requests_made += 1
        try:
            response = super().make_request(method, params)
        except BaseException:  # an interrupted probe must not leave the breaker half-open
            self.breaker.record_failure()
            raise
        self.breaker.record_success()
        return response
