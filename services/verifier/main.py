"""Composition root of the verifier."""

from __future__ import annotations

from anchorline.blobstore import FileBlobStore
from anchorline.runner import StageRunner
from anchorline.settings import Settings
from anchorline_verifier.handler import VerifyHandler


def build(settings: Settings) -> StageRunner:
    handler = VerifyHandler(FileBlobStore(settings.blobs), chunk_size=settings.chunk_size)
    return StageRunner(handler, settings, service="verifier")
