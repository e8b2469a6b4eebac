"""The S3 blob store against a real S3 API server (S3Proxy on its filesystem backend)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from anchorline.errors import Permanent, Retryable
from anchorline.events import JobKind, JobRequested, JobStatus, StageState, utcnow
from anchorline.infra.ports import free_port
from anchorline.infra.s3proxy import S3Proxy
from anchorline.proof.manifest import canonical_bytes, sha256_hex, sign_eip191
from anchorline.settings import Settings
from anchorline.store.blobs import blob_store
from anchorline.store.blobstore import FileBlobStore
from anchorline.store.s3blobs import S3Access, S3BlobStore, ensure_bucket
from anchorline_verifier.handler import VerifyHandler

PART = 5 << 20  # the smallest part S3 takes


class Recording:
    """The real client, with the name of every operation called through it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if callable(attribute):
            self.calls.append(name)
        return attribute


def access(s3proxy: S3Proxy) -> S3Access:
    return S3Access(
        endpoint_url=s3proxy.endpoint,
        access_key_id=s3proxy.access_key,
        secret_access_key=s3proxy.secret_key,
    )


@pytest.fixture
def bucket(s3proxy: S3Proxy) -> str:
    name = f"t{uuid.uuid4().hex[:12]}"
    ensure_bucket(access(s3proxy).client(), name)
    return name


@pytest.fixture
def client(s3proxy: S3Proxy) -> Recording:
    return Recording(access(s3proxy).client())


@pytest.fixture
def store(client: Recording, bucket: str, tmp_path: Path) -> Iterator[S3BlobStore]:
    store = S3BlobStore(
        client, bucket=bucket, prefix="blobs/", local=FileBlobStore(tmp_path), part_size=PART
    )
    yield store
    store.close()


def keys(store: S3BlobStore) -> list[str]:
    listed = store.client.list_objects_v2(Bucket=store.bucket)
    # S3Proxy's filesystem backend also lists its directories, as keys ending in "/".
    return sorted(item["Key"] for item in listed.get("Contents", []) if item["Key"][-1] != "/")


def pending_uploads(store: S3BlobStore) -> list[Any]:
    return list(store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []))


def read(store: S3BlobStore, uri: str, *, tenant: str | None = None, chunk: int = 1 << 20) -> bytes:
    return b"".join(store.chunks(uri, chunk_size=chunk, tenant=tenant))


async def pieces(data: bytes, size: int = 64 << 10) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_small_blob_is_one_put_under_its_hash(store: S3BlobStore, client: Recording) -> None:
    data = os.urandom(100_000)
    uri, size = store.put_file(io.BytesIO(data))

    digest = hashlib.sha256(data).hexdigest()
    assert (uri, size) == (f"sha256:{digest}", len(data))
    assert keys(store) == [f"blobs/sha256/{digest[:2]}/{digest}"]
    assert "put_object" in client.calls and "create_multipart_upload" not in client.calls
    assert store.size(uri) == len(data)
    assert read(store, uri, chunk=4096) == data


def test_a_stream_past_one_part_goes_up_in_parts(store: S3BlobStore, client: Recording) -> None:
    data = os.urandom(2 * PART + 12_345)
    uri, size = asyncio.run(store.put_stream(pieces(data)))

    digest = hashlib.sha256(data).hexdigest()
    assert (uri, size) == (f"sha256:{digest}", len(data))
    assert client.calls.count("upload_part") == 3
    assert "complete_multipart_upload" in client.calls
    # The staging object is gone once copied to the blob's key; no upload is left open.
    assert keys(store) == [f"blobs/sha256/{digest[:2]}/{digest}"]
    assert pending_uploads(store) == []
    assert hashlib.sha256(read(store, uri)).hexdigest() == digest


def test_a_download_streams_in_chunks_of_the_size_asked(store: S3BlobStore) -> None:
    data = os.urandom(3 << 20)
    uri, _ = store.put_file(io.BytesIO(data))
    chunks = store.chunks(uri, chunk_size=256 << 10)
    first = next(chunks)
    assert len(first) <= 256 << 10
    rest = list(chunks)
    assert all(len(chunk) <= 256 << 10 for chunk in rest)
    assert first + b"".join(rest) == data


def test_the_same_content_twice_is_one_blob(store: S3BlobStore) -> None:
    data = os.urandom(PART + 1)
    first = store.put_file(io.BytesIO(data))
    second = asyncio.run(store.put_stream(pieces(data)))
    assert first == second
    assert len(keys(store)) == 1
    assert pending_uploads(store) == []


def test_a_tenant_sees_only_its_own_blobs(store: S3BlobStore) -> None:
    uri, _ = store.put_file(io.BytesIO(b"acme's secret"), tenant="acme")
    digest = uri.removeprefix("sha256:")
    assert keys(store) == [f"blobs/tenants/acme/sha256/{digest[:2]}/{digest}"]

    assert store.exists(uri, tenant="acme")
    assert not store.exists(uri, tenant="bolt") and not store.exists(uri)
    asked = [(uri, "acme"), (uri, "bolt"), (uri, None), (uri, "acme"), (uri, None)]
    assert asyncio.run(store.stored(asked)) == [True, False, False, True, False]
    assert read(store, uri, tenant="acme") == b"acme's secret"
    for other in ("bolt", None):
        with pytest.raises(Retryable, match="not in the blob store yet"):
            store.size(uri, tenant=other)
        with pytest.raises(Retryable, match="not in the blob store yet"):
            read(store, uri, tenant=other)


def test_a_tenant_name_that_is_not_one_is_refused(store: S3BlobStore) -> None:
    with pytest.raises(Permanent, match="tenant must be"):
        store.put_file(io.BytesIO(b"x"), tenant="../escape")


def test_reads_keep_to_the_size_limit(client: Recording, bucket: str, tmp_path: Path) -> None:
    writer = S3BlobStore(client, bucket=bucket, local=FileBlobStore(tmp_path))
    uri, _ = writer.put_file(io.BytesIO(b"x" * 2000))
    reader = S3BlobStore(client, bucket=bucket, local=FileBlobStore(tmp_path), max_bytes=1000)
    with pytest.raises(Permanent, match="over the limit of 1000"):
        reader.size(uri)
    with pytest.raises(Permanent, match="over the limit of 1000"):
        read(reader, uri)


def test_reads_keep_to_the_time_limit(client: Recording, bucket: str, tmp_path: Path) -> None:
    writer = S3BlobStore(client, bucket=bucket, local=FileBlobStore(tmp_path))
    uri, _ = writer.put_file(io.BytesIO(b"x" * 100_000))
    slow = S3BlobStore(client, bucket=bucket, local=FileBlobStore(tmp_path), read_timeout_s=1e-6)
    with pytest.raises(Retryable, match="took over"):
        read(slow, uri, chunk=1000)


def test_a_missing_blob_is_retried_later(store: S3BlobStore) -> None:
    uri = "sha256:" + "ab" * 32
    assert not store.exists(uri)
    with pytest.raises(Retryable, match="not in the blob store yet"):
        store.size(uri)


def test_file_uris_keep_to_the_content_roots(store: S3BlobStore) -> None:
    with pytest.raises(Permanent, match="file:// content URIs are not allowed"):
        store.size("file:///etc/passwd")
    with pytest.raises(Permanent, match="unsupported content_uri"):
        store.size("s3://elsewhere/key")


def test_an_upload_that_fails_midway_leaves_nothing(store: S3BlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        async for chunk in pieces(os.urandom(PART + PART // 2)):
            yield chunk
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        asyncio.run(store.put_stream(broken()))
    assert keys(store) == []
    assert pending_uploads(store) == []


def test_an_object_store_that_does_not_answer_is_retryable(tmp_path: Path) -> None:
    nobody = S3Access(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id="a",
        secret_access_key="b",
        timeout_s=2,
    )
    store = S3BlobStore(nobody.client(), bucket="nowhere", local=FileBlobStore(tmp_path))
    with pytest.raises(Retryable, match="did not answer"):
        store.size("sha256:" + "ab" * 32)
    with pytest.raises(Retryable, match="did not answer"):
        store.exists("sha256:" + "ab" * 32)
    with pytest.raises(Retryable, match="did not answer the upload"):
        store.put_file(io.BytesIO(b"content"))


def test_settings_choose_the_bucket(s3proxy: S3Proxy, bucket: str, tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        blob_url=f"s3://{bucket}/deep/prefix/",
        s3_endpoint_url=s3proxy.endpoint,
        s3_access_key_id=s3proxy.access_key,
        s3_secret_access_key=s3proxy.secret_key,
    )
    store = blob_store(settings)
    assert isinstance(store, S3BlobStore)
    uri, _ = store.put_file(io.BytesIO(b"through the settings"))
    digest = uri.removeprefix("sha256:")
    assert keys(store) == [f"deep/prefix/sha256/{digest[:2]}/{digest}"]
    assert not (tmp_path / "blobs").exists()
    store.close()


def test_the_verifier_hashes_content_streamed_from_s3(store: S3BlobStore) -> None:
    content = os.urandom(PART + 777)
    creator = Account.create()
    document = {"content_hash": sha256_hex(content), "creator": creator.address}
    uri, _ = store.put_file(io.BytesIO(content), tenant="acme")
    job = JobRequested(
        job_id="s3-job",
        kind=JobKind.VERIFY,
        content_uri=uri,
        manifest=canonical_bytes(document).decode(),
        signature=sign_eip191(document, "0x" + bytes(creator.key).hex()),
        submitted_at=utcnow(),
        tenant="acme",
    )
    progress: list[int] = []
    handler = VerifyHandler(store, chunk_size=1 << 20)
    (status,) = handler.handle([job], lambda ref, percent: progress.append(percent))
    assert isinstance(status, JobStatus) and status.state is StageState.SUCCEEDED, status
    assert status.result is not None and sha256_hex(content) in status.result
    assert progress  # reported while the content streamed
