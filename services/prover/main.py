"""Composition root of the prover."""

from __future__ import annotations

from anchorline.errors import ConfigurationError
from anchorline.runner import StageRunner
from anchorline.settings import Settings
from anchorline_prover.handler import ProveHandler


def build(settings: Settings) -> StageRunner:
    if not settings.prover_private_key:
        raise ConfigurationError("ANCHORLINE_PROVER_PRIVATE_KEY is required by the prover")
    salt_key = bytes.fromhex(settings.prover_private_key.removeprefix("0x"))
    return StageRunner(ProveHandler(salt_key=salt_key), settings, service="prover")
