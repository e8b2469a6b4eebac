"""Composition root of the chain-writer."""

from __future__ import annotations

from anchorline.errors import ConfigurationError
from anchorline.runner import StageRunner
from anchorline.settings import Settings
from anchorline_chain_writer.chain import Web3Registry
from anchorline_chain_writer.handler import AnchorHandler


def build(settings: Settings) -> StageRunner:
    if not settings.registry_address or not settings.chain_private_key:
        raise ConfigurationError(
            "the chain-writer needs ANCHORLINE_REGISTRY_ADDRESS and ANCHORLINE_CHAIN_PRIVATE_KEY"
        )
    chain = Web3Registry(
        settings.rpc_url,
        settings.registry_address,
        settings.chain_private_key,
        confirmations=settings.confirmations,
        tx_timeout_s=settings.tx_timeout_s,
    )
    return StageRunner(AnchorHandler(chain), settings, service="chain-writer")
