from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from anchorline.errors import Permanent, Retryable
from anchorline.store.blobstore import FileBlobStore, MemoryBlobStore

DATA = b"0123456789" * 100
URI = f"sha256:{hashlib.sha256(DATA).hexdigest()}"


async def _stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _broken_stream() -> AsyncIterator[bytes]:
    yield b"half of it"
    raise ConnectionResetError("client went away")


def test_put_file_stores_content_under_its_digest(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    uri, size = store.put_file(io.BytesIO(DATA), chunk_size=64)
    digest = hashlib.sha256(DATA).hexdigest()
    assert (uri, size) == (URI, len(DATA))
    assert (tmp_path / "sha256" / digest[:2] / digest).read_bytes() == DATA
    assert list((tmp_path / "staging").iterdir()) == []


def test_put_stream_hashes_as_it_stores(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    uri, size = asyncio.run(store.put_stream(_stream(DATA[:300], DATA[300:])))
    assert (uri, size) == (URI, len(DATA))
    assert b"".join(store.chunks(uri, chunk_size=128)) == DATA
    assert store.size(uri) == len(DATA)


def test_a_failed_stream_leaves_nothing_behind(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    with pytest.raises(ConnectionResetError):
        asyncio.run(store.put_stream(_broken_stream()))
    assert list((tmp_path / "staging").iterdir()) == []
    assert not (tmp_path / "sha256").exists()


def test_storing_the_same_content_twice_keeps_one_blob(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    first = store.put_file(io.BytesIO(DATA))
    second = store.put_file(io.BytesIO(DATA))
    assert first == second
    assert len(list((tmp_path / "sha256").rglob("*"))) == 2  # one folder, one file


def test_chunks_are_at_most_chunk_size(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    uri, _ = store.put_file(io.BytesIO(DATA))
    sizes = [len(chunk) for chunk in store.chunks(uri, chunk_size=300)]
    assert sizes == [300, 300, 300, 100]


def test_empty_content_is_a_blob_too(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    uri, size = store.put_file(io.BytesIO(b""))
    assert uri == f"sha256:{hashlib.sha256(b'').hexdigest()}"
    assert size == 0
    assert store.size(uri) == 0
    assert list(store.chunks(uri, chunk_size=10)) == []


def test_file_uri_is_read_in_place_and_percent_decoded(tmp_path: Path) -> None:
    path = tmp_path / "my file.bin"
    path.write_bytes(DATA)
    store = FileBlobStore(tmp_path / "blobs", content_roots=[tmp_path])
    uri = "file://" + str(path).replace(" ", "%20")
    assert store.resolve(uri) == path.resolve()
    assert store.size(uri) == len(DATA)
    assert b"".join(store.chunks(uri, chunk_size=7)) == DATA


@pytest.mark.parametrize(
    "uri",
    [
        "http://example.com/x",
        "sha256:" + "AB" * 32,
        "sha256:" + "ab" * 31,
        "file://",
        "s3://bucket/key",
        "/absolute/path/without/scheme",
    ],
)
def test_unsupported_uri_is_permanent(tmp_path: Path, uri: str) -> None:
    store = FileBlobStore(tmp_path)
    with pytest.raises(Permanent, match="unsupported content_uri"):
        store.size(uri)


def test_missing_blob_is_retryable(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    with pytest.raises(Retryable, match="not in the blob store yet"):
        store.size(URI)
    with pytest.raises(Retryable, match="not in the blob store yet"):
        next(store.chunks(URI, chunk_size=10))
    with pytest.raises(Retryable):
        FileBlobStore(tmp_path, content_roots=[tmp_path]).size(f"file://{tmp_path / 'absent'}")


def test_memory_store_serves_what_was_added() -> None:
    store = MemoryBlobStore()
    uri = store.add(DATA)
    assert uri == URI
    assert store.size(uri) == len(DATA)
    assert [len(c) for c in store.chunks(uri, chunk_size=400)] == [400, 400, 200]
    assert b"".join(store.chunks(uri, chunk_size=400)) == DATA


def test_memory_store_missing_blob_is_retryable() -> None:
    store = MemoryBlobStore()
    with pytest.raises(Retryable):
        store.size(URI)
    with pytest.raises(Retryable):
        next(store.chunks(URI, chunk_size=10))


@pytest.mark.parametrize("uri", ["file:///etc/hostname", "file:///dev/zero"])
def test_file_uris_are_refused_unless_an_operator_allows_a_root(tmp_path: Path, uri: str) -> None:
    with pytest.raises(Permanent, match="file:// content URIs are not allowed"):
        FileBlobStore(tmp_path).size(uri)


def test_file_uris_outside_the_roots_are_refused_after_links_and_dots(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "out").symlink_to("/etc/hostname")
    store = FileBlobStore(tmp_path / "blobs", content_roots=[allowed])
    for uri in (
        "file:///etc/hostname",
        f"file://{allowed}/../../../etc/hostname",
        f"file://{allowed}/out",
    ):
        with pytest.raises(Permanent, match="outside ANCHORLINE_CONTENT_ROOTS"):
            store.size(uri)
    with pytest.raises(Permanent, match="names a host"):
        store.size(f"file://elsewhere{allowed}/x")


@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
def test_only_regular_files_are_read(tmp_path: Path, kind: str) -> None:
    path = {"device": Path("/dev/zero"), "fifo": tmp_path / "pipe", "directory": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    store = FileBlobStore(tmp_path / "blobs", content_roots=[tmp_path, Path("/dev")])
    with pytest.raises(Permanent, match="is not a regular file"):
        store.size(f"file://{path}")
    with pytest.raises(Permanent, match="is not a regular file"):
        next(store.chunks(f"file://{path}", chunk_size=10))  # a FIFO without writer: no wait


def test_content_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path, max_bytes=len(DATA) - 1)
    uri, _ = store.put_file(io.BytesIO(DATA))
    with pytest.raises(Permanent, match=f"is {len(DATA)} bytes, over the limit of {len(DATA) - 1}"):
        store.size(uri)
    with pytest.raises(Permanent, match="over the limit"):
        next(store.chunks(uri, chunk_size=10))


def test_a_read_past_its_deadline_stops(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path, read_timeout_s=0)
    uri, _ = store.put_file(io.BytesIO(DATA))
    with pytest.raises(Retryable, match="took over 0 s"):
        list(store.chunks(uri, chunk_size=10))


def test_each_tenant_has_blobs_of_its_own(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    uri, _ = store.put_file(io.BytesIO(DATA), tenant="acme")
    assert store.path_of(URI.removeprefix("sha256:"), tenant="acme").parent.parent.parent == (
        tmp_path / "tenants" / "acme"
    )
    assert store.size(uri, tenant="acme") == len(DATA)
    for other in ("bolt", None):
        with pytest.raises(Retryable):
            store.size(uri, tenant=other)
        with pytest.raises(Retryable):
            list(store.chunks(uri, chunk_size=10, tenant=other))


def test_a_streamed_blob_lands_in_its_tenants_place(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    uri, _ = asyncio.run(store.put_stream(_stream(DATA), tenant="bolt"))
    assert b"".join(store.chunks(uri, chunk_size=100, tenant="bolt")) == DATA


@pytest.mark.parametrize("tenant", ["..", "../acme", "a/b", "", "x" * 65])
def test_a_tenant_that_is_not_a_name_is_refused(tmp_path: Path, tenant: str) -> None:
    store = FileBlobStore(tmp_path)
    with pytest.raises(Permanent, match="tenant must be"):
        store.path_of("00" * 32, tenant=tenant)
    for read in (store.size, store.exists):  # the readers join their paths apart
        with pytest.raises(Permanent, match="tenant must be"):
            read("sha256:" + "00" * 32, tenant=tenant)


def test_a_batch_naming_one_blob_many_times_stats_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileBlobStore(tmp_path)
    uri, _ = store.put_file(io.BytesIO(DATA), tenant="acme")
    asked: list[tuple[str, str | None]] = []
    exists = store.exists

    def counted(uri: str, *, tenant: str | None = None) -> bool:
        asked.append((uri, tenant))
        return exists(uri, tenant=tenant)

    monkeypatch.setattr(store, "exists", counted)
    blobs = [(uri, "acme"), (uri, None), (URI[:-1] + "0", "acme")] * 50
    assert asyncio.run(store.stored(blobs)) == [True, False, False] * 50
    assert sorted(asked, key=str) == sorted(set(blobs), key=str)


def test_memory_blobs_are_kept_per_tenant() -> None:
    store = MemoryBlobStore()
    uri = store.add(DATA, tenant="acme")
    assert store.size(uri, tenant="acme") == len(DATA)
    with pytest.raises(Retryable):
        store.size(uri)
