"""Composition root of the chain-writer."""

from __future__ import annotations

import logging
import threading
from functools import cache

from anchorline.errors import ConfigurationError
from anchorline.settings import Settings
from anchorline.stream.runner import StageRunner
from anchorline_chain_writer import metrics
from anchorline_chain_writer.breaker import CircuitBreaker
from anchorline_chain_writer.chain import Web3Registry
from anchorline_chain_writer.fees import FeePolicy, gwei
from anchorline_chain_writer.finality import FinalityWatch, Web3AnchorChain
from anchorline_chain_writer.handler import AnchorHandler

log = logging.getLogger(__name__)


def fee_policy(settings: Settings) -> FeePolicy:
    return FeePolicy(
        cap=gwei(settings.max_fee_gwei),
        min_tip=gwei(settings.priority_fee_gwei),
        bump_percent=settings.fee_bump_percent,
    )


def registry(settings: Settings) -> Web3Registry:
    if not settings.registry_address or not settings.chain_private_key:
        raise ConfigurationError(
            "the chain-writer needs ANCHORLINE_REGISTRY_ADDRESS and ANCHORLINE_CHAIN_PRIVATE_KEY"
        )
    if settings.fee_bump_percent < 10:
        raise ConfigurationError("ANCHORLINE_FEE_BUMP_PERCENT below 10 is refused by nodes")
    return Web3Registry(
        settings.rpc_url,
        settings.registry_address,
        settings.chain_private_key,
        confirmations=settings.confirmations,
        tx_timeout_s=settings.tx_timeout_s,
        stuck_after_s=settings.stuck_tx_timeout_s,
        poll_s=settings.chain_poll_s,
        fees=fee_policy(settings),
        breaker=CircuitBreaker(
            failure_threshold=settings.breaker_failures, cooldown_s=settings.breaker_cooldown_s
        ),
        rpc_rate_per_s=settings.rpc_rate_per_s,
        send_rate_per_s=settings.send_rate_per_s,
        rpc_timeout_s=settings.rpc_timeout_s,
    )


@cache
def shared_registry(settings: Settings) -> Web3Registry:
    """The process's one registry: its workers share the wallet's nonce counter, the breaker
    and the rate limit, as separate ones would hand out the same nonces and multiply the rate."""
    shared = registry(settings)
    metrics.watch(in_flight=shared.in_flight, breaker=shared.breaker)
    return shared


def build(settings: Settings) -> ChainWriter:
    # One root a transaction: anchoring a root waits for its confirmations, and a poll batch
    # of many would put all their waits under one handling deadline.
    handler = AnchorHandler(shared_registry(settings))
    runner = StageRunner(handler, settings, service="chain-writer", poll_batch=1)
    watch = None
    if settings.finality_depth > 0:
        # A registry of its own: the watch keeps to its own rate limit, not the sender's.
        watch = FinalityWatch(settings, Web3AnchorChain(registry(settings)))
    return ChainWriter(runner, watch)


class ChainWriter:
    """The anchor stage and, beside it in a thread, the finality watch."""

    def __init__(self, runner: StageRunner, watch: FinalityWatch | None) -> None:
        self.runner = runner
        self.watch = watch
        self.failure: BaseException | None = None

    def run(self, stop: threading.Event) -> None:
        if self.watch is None:
            self.runner.run(stop)
            return
        thread = threading.Thread(target=self._watch, args=(stop,), name="finality-watch")
        thread.start()
        try:
            self.runner.run(stop)
        finally:
            stop.set()
            thread.join()
        if self.failure is not None:
            raise RuntimeError("the finality watch failed") from self.failure

    def _watch(self, stop: threading.Event) -> None:
        assert self.watch is not None
        try:
            self.watch.run(stop)
        except Exception as exc:
            log.exception("the finality watch failed; stopping the chain-writer")
            self.failure = exc
            stop.set()
