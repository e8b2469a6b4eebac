"""Content-addressed blob storage: ports and the local-directory adapter."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlparse

from anchorline.errors import Permanent, Retryable
from anchorline.tenants import check_tenant

SHA256_URI = re.compile(r"^sha256:([0-9a-f]{64})$")


class BlobReader(Protocol):
    """Where a stage reads content from."""

    def size(self, uri: str, *, tenant: str | None = None) -> int: ...

    def chunks(
        self, uri: str, *, chunk_size: int, tenant: str | None = None
    ) -> Iterator[bytes]: ...


class FileBlobStore:
    """Blobs as files named by their sha256 under one directory; `file://` URIs read in place.

    Each tenant's blobs live apart (`tenants/<tenant>/sha256/…`), so that a tenant can neither
    use nor detect another's content; blobs of no tenant (an open API) live in `sha256/…`.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, digest: str, *, tenant: str | None) -> Path:
        base = self.root if tenant is None else self.root / "tenants" / check_tenant(tenant)
        return base / "sha256" / digest[:2] / digest

    def resolve(self, uri: str, *, tenant: str | None = None) -> Path:
        match = SHA256_URI.match(uri)
        if match:
            return self.path_of(match.group(1), tenant=tenant)
        parsed = urlparse(uri)
        if parsed.scheme == "file" and parsed.path:
            return Path(unquote(parsed.path))
        raise Permanent(f"unsupported content_uri {uri!r}: use sha256:<hex> or file:///path")

    def size(self, uri: str, *, tenant: str | None = None) -> int:
        path = self.resolve(uri, tenant=tenant)
        try:
            return path.stat().st_size
        except FileNotFoundError as exc:
            raise Retryable(f"content {uri} is not in the blob store yet") from exc

    def chunks(self, uri: str, *, chunk_size: int, tenant: str | None = None) -> Iterator[bytes]:
        path = self.resolve(uri, tenant=tenant)
        try:
            handle = path.open("rb")
        except FileNotFoundError as exc:
            raise Retryable(f"content {uri} is not in the blob store yet") from exc
        with handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def writer(self, *, tenant: str | None) -> BlobWriter:
        staging = self.root / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        return BlobWriter(self, staging, tenant=tenant)

    async def put_stream(
        self, chunks: AsyncIterator[bytes], *, tenant: str | None = None
    ) -> tuple[str, int]:
        """Store a stream, hashing it as it passes; returns (uri, size)."""
        writer = self.writer(tenant=tenant)
        try:
            async for chunk in chunks:
                writer.write(chunk)
            return writer.commit()
        except BaseException:
            writer.discard()
            raise

    def put_file(
        self, source: BinaryIO, *, tenant: str | None = None, chunk_size: int = 1 << 20
    ) -> tuple[str, int]:
        """Store a readable file, hashing it as it is copied; returns (uri, size)."""
        writer = self.writer(tenant=tenant)
        try:
            while chunk := source.read(chunk_size):
                writer.write(chunk)
            return writer.commit()
        except BaseException:
            writer.discard()
            raise


class BlobWriter:
    """One blob being written: hashed as it is written, renamed to its digest on commit."""

    def __init__(self, store: FileBlobStore, staging: Path, *, tenant: str | None) -> None:
        self.store = store
        self.tenant = tenant
        fd, name = tempfile.mkstemp(dir=staging)
        self.handle = os.fdopen(fd, "wb")
        self.temp = Path(name)
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.size += len(chunk)
        self.handle.write(chunk)

    def commit(self) -> tuple[str, int]:
        self.handle.close()
        digest = self.hasher.hexdigest()
        final = self.store.path_of(digest, tenant=self.tenant)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.temp, final)
        return f"sha256:{digest}", self.size

    def discard(self) -> None:
        self.handle.close()
        self.temp.unlink(missing_ok=True)


class MemoryBlobStore:
    """Blobs in a dict, for unit tests of stage logic."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[str | None, str], bytes] = {}

    def add(self, data: bytes, *, tenant: str | None = None) -> str:
        uri = f"sha256:{hashlib.sha256(data).hexdigest()}"
        self.blobs[tenant, uri] = data
        return uri

    def size(self, uri: str, *, tenant: str | None = None) -> int:
        if (tenant, uri) not in self.blobs:
            raise Retryable(f"content {uri} is not in the blob store yet")
        return len(self.blobs[tenant, uri])

    def chunks(self, uri: str, *, chunk_size: int, tenant: str | None = None) -> Iterator[bytes]:
        data = self.blobs.get((tenant, uri))
        if data is None:
            raise Retryable(f"content {uri} is not in the blob store yet")
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]
