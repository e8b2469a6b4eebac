"""Composition root of the prover."""

from __future__ import annotations

from anchorline.errors import ConfigurationError
from anchorline.proof.attestation import Attester
from anchorline.settings import Settings
from anchorline.stream.runner import StageRunner
from anchorline_prover.handler import ProveHandler


def build_handler(settings: Settings) -> ProveHandler:
    if not settings.prover_private_key:
        raise ConfigurationError("ANCHORLINE_PROVER_PRIVATE_KEY is required by the prover")
    salt_key = bytes.fromhex(settings.prover_private_key.removeprefix("0x"))
    attester = Attester(settings.prover_private_key, chain_id=settings.chain_id or None)
    return ProveHandler(salt_key=salt_key, attester=attester)


def build(settings: Settings) -> StageRunner:
    return StageRunner(build_handler(settings), settings, service="prover")
