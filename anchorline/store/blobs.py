"""The blob store the settings name: a local directory, or a bucket through the S3 API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from anchorline.settings import Settings
from anchorline.store.blobstore import BlobStore, FileBlobStore

if TYPE_CHECKING:
    from anchorline.store.s3blobs import S3Access


def blob_store(settings: Settings) -> BlobStore:
    """BLOB_URL's bucket if set, else BLOB_DIR; `file://` content under CONTENT_ROOTS either way."""
    files = FileBlobStore(
        settings.blobs,
        content_roots=settings.content_root_paths,
        max_bytes=settings.max_content_bytes,
        read_timeout_s=settings.content_read_timeout_s,
    )
    location = settings.s3_blobs
    if location is None:
        return files
    # Only processes that use boto3 import it: it and an S3 client add about 25 MiB to one.
    from anchorline.store.s3blobs import S3BlobStore

    bucket, prefix = location
    return S3BlobStore(
        s3_access(settings).client(),
        bucket=bucket,
        prefix=prefix,
        local=files,
        max_bytes=settings.max_content_bytes,
        read_timeout_s=settings.content_read_timeout_s,
        part_size=settings.s3_part_size,
    )


def s3_access(settings: Settings) -> S3Access:
    """How the settings reach the object store."""
    from anchorline.store.s3blobs import S3Access

    return S3Access(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        timeout_s=settings.content_read_timeout_s,
    )
