"""The chain-writer's own metrics: gas and fees spent, transactions in flight, the breaker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge

from anchorline_chain_writer.breaker import BreakerState, CircuitBreaker

GAS_USED = Counter("anchorline_chain_gas_used", "Gas of the anchor transactions mined.")
FEES_WEI = Counter("anchorline_chain_fees_wei", "Wei the hot wallet paid for mined transactions.")
PENDING = Gauge(
    "anchorline_chain_pending_transactions",
    "Anchor transactions sent (each holding a nonce of the wallet) and not yet confirmed.",
)
BREAKER = Gauge(
    "anchorline_chain_breaker_state",
    "The RPC circuit breaker: 0 closed, 1 half-open (probing), 2 open (node left alone).",
)
BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def spent(receipt: Mapping[str, Any]) -> None:
    """Count a mined transaction's gas and fee (a reverted one spends too)."""
    gas = int(receipt.get("gasUsed", 0))
    GAS_USED.inc(gas)
    FEES_WEI.inc(gas * int(receipt.get("effectiveGasPrice", 0)))


def watch(*, in_flight: Mapping[bytes, Any], breaker: CircuitBreaker) -> None:
    """Read the process's one registry's in-flight transactions and breaker at each scrape."""
    PENDING.set_function(lambda: len(in_flight))
    BREAKER.set_function(lambda: BREAKER_VALUES[breaker.state])
