"""Blobs in object storage through the S3 API (boto3): the local store's layout, URIs and limits.

A blob is the object `<prefix>[tenants/<tenant>/]sha256/<aa>/<hex>`. An upload is hashed as it
streams; one that fits in a part is one PUT to its final key, a larger one is a multipart upload
to `<prefix>staging/<random>`, copied to its final key once its hash is known and then deleted.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from anchorline.errors import Permanent, Retryable
from anchorline.store.blobstore import MAX_CONTENT_BYTES, READ_TIMEOUT_S, SHA256_URI, FileBlobStore
from anchorline.tenants import check_tenant

PART_SIZE = 8 << 20
COPY_PART_MAX = 5 << 30  # S3 copies up to 5 GiB in one request; larger ones go in parts
MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
LOOKUPS_AT_ONCE = 16  # HEAD requests in flight for one batch of job requests
T = TypeVar("T")


@dataclass(frozen=True)
class S3Access:
    """How to reach the object store; empty keys leave credentials to boto3's own chain."""

    endpoint_url: str = ""
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = ""
    timeout_s: float = READ_TIMEOUT_S

    def client(self) -> Any:
        """A boto3 S3 client (thread-safe) for these settings."""
        config = Config(
            region_name=self.region,
            # Path-style URLs: an S3-compatible server on an address has no bucket subdomains.
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            connect_timeout=5,
            read_timeout=self.timeout_s,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=LOOKUPS_AT_ONCE,
            # boto3's default checksum headers (since 1.36) are refused by some S3-compatible
            # servers (S3Proxy 2.6: NotImplemented); the content is hashed end to end anyway.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session()
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url or None,
            aws_access_key_id=self.access_key_id or None,
            aws_secret_access_key=self.secret_access_key or None,
            config=config,
        )


class S3BlobStore:
    """Blobs as objects named by their sha256 in one bucket, under a key prefix; `file://` URIs
    are left to `local` (read only under its content roots). Every read is at most `max_bytes`
    long and done within `read_timeout_s`; anything the object store does not answer is a
    Retryable, as a blob not there yet is."""

    def __init__(
        self,
        client: Any,
        *,
        bucket: str,
        prefix: str = "",
        local: FileBlobStore,
        max_bytes: int = MAX_CONTENT_BYTES,
        read_timeout_s: float = READ_TIMEOUT_S,
        part_size: int = PART_SIZE,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.local = local
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s
        self.part_size = part_size
        self._lookups = ThreadPoolExecutor(LOOKUPS_AT_ONCE, thread_name_prefix="s3-lookup")

    def key_of(self, digest: str, *, tenant: str | None) -> str:
        base = "" if tenant is None else f"tenants/{check_tenant(tenant)}/"
        return f"{self.prefix}{base}sha256/{digest[:2]}/{digest}"

    def _key(self, uri: str, tenant: str | None) -> str | None:
        match = SHA256_URI.match(uri)
        return self.key_of(match.group(1), tenant=tenant) if match else None

    def size(self, uri: str, *, tenant: str | None = None) -> int:
        key = self._key(uri, tenant)
        if key is None:
            return self.local.size(uri, tenant=tenant)
        head = self._call(uri, self.client.head_object, Bucket=self.bucket, Key=key)
        length = int(head["ContentLength"])
        self._check(uri, length)
        return length

    def chunks(self, uri: str, *, chunk_size: int, tenant: str | None = None) -> Iterator[bytes]:
        key = self._key(uri, tenant)
        if key is None:
            yield from self.local.chunks(uri, chunk_size=chunk_size, tenant=tenant)
            return
        response = self._call(uri, self.client.get_object, Bucket=self.bucket, Key=key)
        body = response["Body"]
        try:
            self._check(uri, int(response["ContentLength"]))
            deadline = time.monotonic() + self.read_timeout_s
            done = 0
            for chunk in self._guarded(uri, body.iter_chunks(chunk_size)):
                done += len(chunk)
                if done > self.max_bytes:
                    raise Permanent(f"content {uri} grew past {self.max_bytes} bytes while read")
                if time.monotonic() > deadline:
                    raise Retryable(f"reading content {uri} took over {self.read_timeout_s} s")
                yield chunk
        finally:
            body.close()

    def _guarded(self, uri: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """The chunks, a connection lost midway being a Retryable."""
        try:
            yield from chunks
        except (BotoCoreError, OSError) as exc:
            raise Retryable(f"reading content {uri} from the object store: {exc}") from exc

    def _check(self, uri: str, length: int) -> None:
        if length > self.max_bytes:
            raise Permanent(
                f"content {uri} is {length} bytes, over the limit of {self.max_bytes}"
                " (ANCHORLINE_MAX_CONTENT_BYTES)"
            )

    def _call(self, uri: str, operation: Callable[..., T], **params: Any) -> T:
        try:
            return operation(**params)
        except ClientError as exc:
            if _code(exc) in MISSING:
                raise Retryable(f"content {uri} is not in the blob store yet") from exc
            raise Retryable(f"the object store refused to serve {uri}: {exc}") from exc
        except BotoCoreError as exc:
            raise Retryable(f"the object store did not answer for {uri}: {exc}") from exc

    def exists(self, uri: str, *, tenant: str | None = None) -> bool:
        """Whether the tenant's blob `sha256:<hex>` is stored (any other URI: False)."""
        key = self._key(uri, tenant)
        return key is not None and self.has_key(key)

    def has_key(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in MISSING:
                return False
            raise Retryable(f"the object store refused to look {key} up: {exc}") from exc
        except BotoCoreError as exc:
            raise Retryable(f"the object store did not answer for {key}: {exc}") from exc
        return True

    async def stored(self, blobs: Sequence[tuple[str, str | None]]) -> list[bool]:
        loop = asyncio.get_running_loop()
        distinct = list(set(blobs))  # one request a blob, however many jobs of a batch name it
        lookups = [
            loop.run_in_executor(self._lookups, functools.partial(self.exists, uri, tenant=tenant))
            for uri, tenant in distinct
        ]
        found = dict(zip(distinct, await asyncio.gather(*lookups), strict=True))
        return [found[blob] for blob in blobs]

    def writer(self, *, tenant: str | None) -> S3BlobWriter:
        return S3BlobWriter(self, tenant=tenant)

    async def put_stream(
        self, chunks: AsyncIterator[bytes], *, tenant: str | None = None
    ) -> tuple[str, int]:
        """Store a stream, hashing it as it passes, a part uploaded whenever one is full (off
        the event loop); returns (uri, size)."""
        writer = self.writer(tenant=tenant)
        try:
            with _unavailable():
                async for chunk in chunks:
                    writer.add(chunk)
                    if writer.full:
                        await asyncio.to_thread(writer.upload_parts)
                return await asyncio.to_thread(writer.commit)
        except BaseException:
            await asyncio.to_thread(writer.discard)
            raise

    def put_file(
        self, source: BinaryIO, *, tenant: str | None = None, chunk_size: int = 1 << 20
    ) -> tuple[str, int]:
        """Store a readable file, hashing it as it is uploaded; returns (uri, size)."""
        writer = self.writer(tenant=tenant)
        try:
            with _unavailable():
                while chunk := source.read(chunk_size):
                    writer.add(chunk)
                    writer.upload_parts()
                return writer.commit()
        except BaseException:
            writer.discard()
            raise

    def close(self) -> None:
        self._lookups.shutdown(wait=False)


class S3BlobWriter:
    """One blob being written: hashed as it is written, in memory up to one part; past that a
    multipart upload to a staging key, copied to the blob's key on commit."""

    def __init__(self, store: S3BlobStore, *, tenant: str | None) -> None:
        self.store = store
        self.client = store.client
        self.tenant = tenant
        self.hasher = hashlib.sha256()
        self.size = 0
        self.buffer = bytearray()
        self.staging = f"{store.prefix}staging/{uuid.uuid4().hex}"
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    @property
    def full(self) -> bool:
        return len(self.buffer) >= self.store.part_size

    def add(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.size += len(chunk)
        self.buffer += chunk

    def upload_parts(self) -> None:
        """Upload every whole part in the buffer."""
        while self.full:
            self._upload_part(self.store.part_size)

    def _upload_part(self, length: int) -> None:
        bucket, key = self.store.bucket, self.staging
        if self.upload_id is None:
            started = self.client.create_multipart_upload(Bucket=bucket, Key=key)
            self.upload_id = started["UploadId"]
        number = len(self.parts) + 1
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        answer = self.client.upload_part(
            Bucket=bucket, Key=key, UploadId=self.upload_id, PartNumber=number, Body=body
        )
        self.parts.append({"ETag": answer["ETag"], "PartNumber": number})

    def commit(self) -> tuple[str, int]:
        digest = self.hasher.hexdigest()
        final = self.store.key_of(digest, tenant=self.tenant)
        if self.upload_id is None:
            self.client.put_object(Bucket=self.store.bucket, Key=final, Body=bytes(self.buffer))
        else:
            self._complete_to(final)
        return f"sha256:{digest}", self.size

    def _complete_to(self, final: str) -> None:
        bucket = self.store.bucket
        if self.buffer:
            self._upload_part(len(self.buffer))
        self.client.complete_multipart_upload(
            Bucket=bucket,
            Key=self.staging,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )
        self.upload_id = None
        if not self.store.has_key(final):  # the same content uploaded before
            self.client.copy(
                {"Bucket": bucket, "Key": self.staging},
                bucket,
                final,
                Config=TransferConfig(multipart_threshold=COPY_PART_MAX, use_threads=False),
            )
        self.client.delete_object(Bucket=bucket, Key=self.staging)

    def discard(self) -> None:
        """Abort the upload and delete what it left, as far as the object store answers."""
        bucket = self.store.bucket
        try:
            if self.upload_id is not None:
                self.client.abort_multipart_upload(
                    Bucket=bucket, Key=self.staging, UploadId=self.upload_id
                )
            elif self.parts:  # completed, then the copy failed
                self.client.delete_object(Bucket=bucket, Key=self.staging)
        except (BotoCoreError, ClientError):
            pass  # a bucket lifecycle rule on staging/ removes what is left behind
        self.buffer.clear()


def ensure_bucket(client: Any, bucket: str, *, region: str = "us-east-1") -> None:
    """Create the bucket unless it is there (for local runs and tests)."""
    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if _code(exc) not in MISSING | {"NoSuchBucket"}:
            raise
    if region == "us-east-1":  # the one region that refuses to be named
        client.create_bucket(Bucket=bucket)
    else:
        location = {"LocationConstraint": region}
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration=location)


@contextmanager
def _unavailable() -> Iterator[None]:
    """An upload the object store did not take is a Retryable (the gateway answers 503)."""
    try:
        yield
    except ClientError as exc:
        raise Retryable(f"the object store did not take the upload: {exc}") from exc
    except BotoCoreError as exc:
        raise Retryable(f"the object store did not answer the upload: {exc}") from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
