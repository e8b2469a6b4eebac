"""The jobs the benchmark submits: a few 4 KiB contents, each signed by its creator, reused with
a new job id each time (the work per job is the same as for new content)."""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account

from anchorline.events import JobKind, JobRequested, new_id, utcnow
from anchorline.proof.manifest import sign_eip191
from anchorline.store.blobstore import FileBlobStore

CONTENT_BYTES = 4096


@dataclass(frozen=True)
class Signed:
    """One stored content with its manifest and the creator's signature."""

    content_uri: str
    manifest: str
    signature: str

    def event(self, kind: JobKind) -> JobRequested:
        return JobRequested(
            job_id=new_id(),
            kind=kind,
            content_uri=self.content_uri,
            manifest=self.manifest,
            signature=self.signature,
            submitted_at=utcnow(),
        )

    def request(self, kind: JobKind) -> dict[str, Any]:
        """The JSON body of `POST /v1/jobs` (content already in the blob store)."""
        return {
            "kind": str(kind),
            "content_uri": self.content_uri,
            "manifest": self.manifest,
            "signature": self.signature,
        }


def signed_contents(blobs: Path, *, count: int = 8, size: int = CONTENT_BYTES) -> list[Signed]:
    store = FileBlobStore(blobs)
    signed = []
    for index in range(count):
        data = os.urandom(size)
        uri, _ = store.put_file(io.BytesIO(data))
        creator = Account.create()
        document = {
            "content_hash": "0x" + hashlib.sha256(data).hexdigest(),
            "creator": creator.address,
            "created_at": "2026-11-29T00:00:00Z",
            "metadata": {"title": f"bench {index}"},
        }
        signed.append(Signed(uri, json.dumps(document), sign_eip191(document, creator.key.hex())))
    return signed
