"""Composition root of the verifier."""

from __future__ import annotations

from anchorline.settings import Settings
from anchorline.store.blobs import blob_store
from anchorline.stream.runner import StageRunner
from anchorline_verifier.handler import VerifyHandler
from anchorline_verifier.onchain import RpcContentRegistry


def build_handler(settings: Settings) -> VerifyHandler:
    registry = (
        RpcContentRegistry(settings.rpc_url, settings.registry_address)
        if settings.registry_address
        else None
    )
    return VerifyHandler(blob_store(settings), chunk_size=settings.chunk_size, registry=registry)


def build(settings: Settings) -> StageRunner:
    return StageRunner(build_handler(settings), settings, service="verifier")
