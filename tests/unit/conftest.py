from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.engine import Engine

from anchorline.events import JobKind, JobStatus, Stage, StageState
from anchorline.proof.manifest import canonical_bytes, sha256_hex, sign_eip191
from anchorline.store.blobstore import FileBlobStore
from anchorline.store.migrate import upgrade
from anchorline_gateway.publisher import MemoryPublisher

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class SignedManifest:
    content: bytes
    document: dict[str, Any]
    signature: str

    @property
    def text(self) -> str:
        return canonical_bytes(self.document).decode()


SignManifest = Callable[..., SignedManifest]
MakeStatus = Callable[..., JobStatus]


def private_key(account: LocalAccount) -> str:
    return "0x" + bytes(account.key).hex()


@pytest.fixture
def creator() -> LocalAccount:
    return Account.create()


@pytest.fixture
def other_key() -> LocalAccount:
    return Account.create()


@pytest.fixture
def sign_manifest(creator: LocalAccount) -> SignManifest:
    """A manifest naming `creator` for some content, signed by `creator` unless told otherwise."""

    def make(
        content: bytes = b"some content",
        *,
        signer: LocalAccount | None = None,
        **document: Any,
    ) -> SignedManifest:
        fields = {"content_hash": sha256_hex(content), "creator": creator.address, **document}
        signature = sign_eip191(fields, private_key(signer or creator))
        return SignedManifest(content, fields, signature)

    return make


@pytest.fixture
def make_status() -> MakeStatus:
    """A JobStatus with readable defaults; `at` is seconds after T0."""

    def make(
        state: StageState = StageState.RUNNING,
        *,
        job_id: str = "job-1",
        kind: JobKind = JobKind.PROOF,
        stage: Stage = Stage.VERIFY,
        at: float = 0,
        **changes: Any,
    ) -> JobStatus:
        changes.setdefault("submitted_at", T0)
        return JobStatus(
            job_id=job_id,
            kind=kind,
            stage=stage,
            state=state,
            occurred_at=T0 + timedelta(seconds=at),
            **changes,
        )

    return make


@pytest.fixture
def at() -> Callable[[float], datetime]:
    """The time `seconds` after T0, the clock make_status counts from."""
    return lambda seconds: T0 + timedelta(seconds=seconds)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A SQLite file brought to the newest schema by the real migrations."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def publisher() -> MemoryPublisher:
    """The gateway's Kafka port, in memory: what the routes published."""
    return MemoryPublisher()


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")
