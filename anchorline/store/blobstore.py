"""Content-addressed blob storage: ports and the local-directory adapter (S3 is in s3blobs)."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import ParseResult, unquote, urlparse

from anchorline.errors import Permanent, Retryable
from anchorline.tenants import check_tenant

SHA256_URI = re.compile(r"^sha256:([0-9a-f]{64})$")
MAX_CONTENT_BYTES = 4 << 30
READ_TIMEOUT_S = 60.0
# O_NONBLOCK: opening a FIFO must not wait for a writer (reads of regular files ignore it).
# O_NOFOLLOW: a path checked against the content roots must not become a link before it opens.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)


class BlobReader(Protocol):
    """Where a stage reads content from."""

    def size(self, uri: str, *, tenant: str | None = None) -> int: ...

    def chunks(
        self, uri: str, *, chunk_size: int, tenant: str | None = None
    ) -> Iterator[bytes]: ...


class BlobStore(BlobReader, Protocol):
    """Where the gateway stores uploads and checks that content named by a URI is there."""

    async def stored(self, blobs: Sequence[tuple[str, str | None]]) -> list[bool]:
        """For each (uri, tenant), whether that tenant's blob `sha256:<hex>` is stored."""
        ...

    async def put_stream(
        self, chunks: AsyncIterator[bytes], *, tenant: str | None = None
    ) -> tuple[str, int]: ...

    def put_file(
        self, source: BinaryIO, *, tenant: str | None = None, chunk_size: int = 1 << 20
    ) -> tuple[str, int]: ...


class FileBlobStore:
    """Blobs as files named by their sha256 under one directory; `file://` URIs read in place,
    only under `content_roots`. Every read is of a regular file, at most `max_bytes` long and
    done within `read_timeout_s`.

    Each tenant's blobs live apart (`tenants/<tenant>/sha256/…`), so that a tenant can neither
    use nor detect another's content; blobs of no tenant (an open API) live in `sha256/…`.
    """

    def __init__(
        self,
        root: Path,
        *,
        content_roots: Sequence[Path] = (),
        max_bytes: int = MAX_CONTENT_BYTES,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.root = root
        self._root = os.fspath(root)
        self.content_roots = tuple(Path(allowed).resolve() for allowed in content_roots)
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    def path_of(self, digest: str, *, tenant: str | None) -> Path:
        return Path(self._blob_file(digest, tenant=tenant))

    def _blob_file(self, digest: str, *, tenant: str | None) -> str:
        """Where a blob lives, joined as a string: pathlib was 2 to 4 % of the verifier's time
        for the `sha256:` URIs every job reads."""
        base = self._root
        if tenant is not None:
            base = os.path.join(base, "tenants", check_tenant(tenant))
        return os.path.join(base, "sha256", digest[:2], digest)

    def _file_of(self, uri: str, *, tenant: str | None) -> str:
        """`resolve`, as a string."""
        match = SHA256_URI.match(uri)
        if match is None:
            return os.fspath(self.resolve(uri, tenant=tenant))
        return self._blob_file(match.group(1), tenant=tenant)

    def resolve(self, uri: str, *, tenant: str | None = None) -> Path:
        match = SHA256_URI.match(uri)
        if match:
            return self.path_of(match.group(1), tenant=tenant)
        parsed = urlparse(uri)
        if parsed.scheme == "file" and parsed.path:
            return self._allowed(parsed, uri)
        raise Permanent(f"unsupported content_uri {uri!r}: use sha256:<hex> or file:///path")

    def _allowed(self, parsed: ParseResult, uri: str) -> Path:
        """The file a `file://` URI names, links and `..` resolved, if under a content root."""
        if not self.content_roots:
            raise Permanent("file:// content URIs are not allowed (no ANCHORLINE_CONTENT_ROOTS)")
        if parsed.netloc not in ("", "localhost"):
            raise Permanent(f"content_uri {uri[:200]!r} names a host")
        try:
            path = Path(unquote(parsed.path)).resolve()
        except (OSError, ValueError) as exc:  # a loop of links, a NUL byte
            raise Permanent(f"content_uri {uri[:200]!r} is not a usable path: {exc}") from exc
        if not any(path.is_relative_to(allowed) for allowed in self.content_roots):
            raise Permanent(f"content_uri {uri[:200]!r} is outside ANCHORLINE_CONTENT_ROOTS")
        return path

    def exists(self, uri: str, *, tenant: str | None = None) -> bool:
        """Whether the tenant's blob `sha256:<hex>` is stored (any other URI: False)."""
        match = SHA256_URI.match(uri)
        return match is not None and os.path.isfile(self._file_of(uri, tenant=tenant))

    async def stored(self, blobs: Sequence[tuple[str, str | None]]) -> list[bool]:
        # A stat for each blob, once however many jobs of a batch name it: quick enough for the
        # event loop (the S3 store's requests are not).
        found = {blob: self.exists(blob[0], tenant=blob[1]) for blob in set(blobs)}
        return [found[blob] for blob in blobs]

    def size(self, uri: str, *, tenant: str | None = None) -> int:
        path = self._file_of(uri, tenant=tenant)
        try:
            info = os.stat(path)
        except FileNotFoundError as exc:
            raise Retryable(f"content {uri} is not in the blob store yet") from exc
        except (OSError, ValueError) as exc:
            raise Permanent(f"content {uri} cannot be read: {exc}") from exc
        self._check(uri, info)
        return info.st_size

    def chunks(self, uri: str, *, chunk_size: int, tenant: str | None = None) -> Iterator[bytes]:
        path = self._file_of(uri, tenant=tenant)
        try:
            fd = os.open(path, OPEN_FLAGS)
        except FileNotFoundError as exc:
            raise Retryable(f"content {uri} is not in the blob store yet") from exc
        except (OSError, ValueError) as exc:
            raise Permanent(f"content {uri} cannot be read: {exc}") from exc
        try:
            self._check(uri, os.fstat(fd))
            handle = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        with handle:
            deadline = time.monotonic() + self.read_timeout_s
            done = 0
            while chunk := handle.read(chunk_size):
                done += len(chunk)
                if done > self.max_bytes:
                    raise Permanent(f"content {uri} grew past {self.max_bytes} bytes while read")
                if time.monotonic() > deadline:
                    raise Retryable(f"reading content {uri} took over {self.read_timeout_s} s")
                yield chunk

    def _check(self, uri: str, info: os.stat_result) -> None:
        if not stat.S_ISREG(info.st_mode):
            raise Permanent(f"content {uri} is not a regular file")
        if info.st_size > self.max_bytes:
            raise Permanent(
                f"content {uri} is {info.st_size} bytes, over the limit of {self.max_bytes}"
                " (ANCHORLINE_MAX_CONTENT_BYTES)"
            )

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
