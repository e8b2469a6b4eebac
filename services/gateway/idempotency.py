"""Idempotency-Key as draft-ietf-httpapi-idempotency-key-header describes it.

The first request with a key claims it atomically (an INSERT that does nothing on conflict);
a request with the same key finds the claim: the same request gets the same job once the first
finished, a different request gets 422, and one that comes while the first is still in flight
gets 409. Keys are per tenant. The table is the gateway's own; it never writes the jobs table.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from starlette.requests import Request

from anchorline.events import JobRequested, utcnow
from anchorline.store.db import idempotency_keys
from anchorline_gateway.problems import BadRequest

MAX_KEY = 255
KEY_RE = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY}}}")
SF_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
# A claim whose request never finished (its gateway died mid-publish) may be taken over after
# this long, so that a key is not stuck in flight for good.
LEASE_S = 60.0
# How long a key names its job (the draft lets a server expire keys); a setting.
TTL_S = 24 * 3600.0
PURGE_EVERY_S = 60.0


class Claim(StrEnum):
    NEW = "new"  # this request holds the key now: publish, then complete()
    DONE = "done"  # the same request finished before: answer with its job
    IN_FLIGHT = "in_flight"  # the same key is being processed right now
    MISMATCH = "mismatch"  # the key was used with another request


@dataclass(frozen=True)
class Claimed:
    claim: Claim
    job_id: str
    kind: str


class IdempotencyKeys(Protocol):
    """Where the gateway records which request took which key."""

    def claim(self, job: JobRequested, *, key: str, fingerprint: str) -> Claimed: ...

    def complete(self, job: JobRequested, *, key: str) -> None: ...

    def release(self, job: JobRequested, *, key: str) -> None: ...


def key_of(request: Request) -> str | None:
    """The request's Idempotency-Key, as an sf-string (`"…"`) or a bare token; None when absent."""
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    quoted = SF_STRING.fullmatch(raw)
    key = re.sub(r"\\(.)", r"\1", quoted.group(1)) if quoted else raw
    if not KEY_RE.fullmatch(key):
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY} printable ASCII characters")
    return key


def fingerprint(job: JobRequested) -> str:
    """What makes two requests the same request: every field the client chose."""
    fields = [
        job.kind.value,
        job.content_uri,
        job.manifest,
        job.signature,
        job.signature_scheme,
        job.tenant,
    ]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


class SqlIdempotencyKeys:
    """Claims in the `idempotency_keys` table, on PostgreSQL or SQLite."""

    def __init__(self, engine: Engine, *, lease_s: float = LEASE_S, ttl_s: float = TTL_S) -> None:
        self.engine = engine
        self.lease = timedelta(seconds=lease_s)
        self.ttl = timedelta(seconds=ttl_s)
        self._next_purge = 0.0

    def claim(self, job: JobRequested, *, key: str, fingerprint: str) -> Claimed:
        self._purge_now_and_then()
        while True:
            with self.engine.begin() as connection:
                connection.execute(
                    idempotency_keys.delete().where(*self._is(job, key), self._expired())
                )
                if self._insert(connection, job, key=key, fingerprint=fingerprint):
                    return Claimed(Claim.NEW, job.job_id, job.kind.value)
                row = connection.execute(
                    sa.select(idempotency_keys).where(*self._is(job, key))
                ).first()
                if row is not None:
                    return self._existing(connection, row, job, key=key, fingerprint=fingerprint)
            # The claim we collided with was released in between: try again.

    def _existing(
        self,
        connection: Connection,
        row: sa.Row[Any],
        job: JobRequested,
        *,
        key: str,
        fingerprint: str,
    ) -> Claimed:
        if row.fingerprint != fingerprint:
            return Claimed(Claim.MISMATCH, row.job_id, row.kind)
        if row.state == "done":
            return Claimed(Claim.DONE, row.job_id, row.kind)
        if self._take_over(connection, job, key=key):
            return Claimed(Claim.NEW, row.job_id, row.kind)
        return Claimed(Claim.IN_FLIGHT, row.job_id, row.kind)

    def complete(self, job: JobRequested, *, key: str) -> None:
        update = idempotency_keys.update().where(*self._is(job, key)).values(state="done")
        with self.engine.begin() as connection:
            connection.execute(update)

    def release(self, job: JobRequested, *, key: str) -> None:
        """Forget a claim whose request failed (Kafka did not take it), so a retry may claim."""
        delete = idempotency_keys.delete().where(
            *self._is(job, key), idempotency_keys.c.state == "in_flight"
        )
        with self.engine.begin() as connection:
            connection.execute(delete)

    def _insert(
        self, connection: Connection, job: JobRequested, *, key: str, fingerprint: str
    ) -> bool:
        now = utcnow()
        values = {
            "tenant": job.tenant or "",
            "key": key,
            "fingerprint": fingerprint,
            "job_id": job.job_id,
            "kind": job.kind.value,
            "state": "in_flight",
            "created_at": now,
            "claimed_at": now,
        }
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(idempotency_keys).values(values).on_conflict_do_nothing()
        # RETURNING says whether the row went in on both databases (rowcount does not).
        inserted = connection.execute(insert.returning(idempotency_keys.c.key)).first()
        return inserted is not None

    def _take_over(self, connection: Connection, job: JobRequested, *, key: str) -> bool:
        """Claim a key whose claim is older than the lease; one request wins it."""
        now = utcnow()
        stale = idempotency_keys.update().where(
            *self._is(job, key),
            idempotency_keys.c.state == "in_flight",
            idempotency_keys.c.claimed_at < now - self.lease,
        )
        taken = stale.values(claimed_at=now).returning(idempotency_keys.c.key)
        return connection.execute(taken).first() is not None

    def _expired(self) -> sa.ColumnElement[bool]:
        return idempotency_keys.c.created_at < utcnow() - self.ttl

    def _purge_now_and_then(self) -> None:
        """Forget expired keys of every tenant, at most once a minute per gateway process."""
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_EVERY_S
        with self.engine.begin() as connection:
            connection.execute(idempotency_keys.delete().where(self._expired()))

    @staticmethod
    def _is(job: JobRequested, key: str) -> tuple[sa.ColumnElement[bool], ...]:
        return (idempotency_keys.c.tenant == (job.tenant or ""), idempotency_keys.c.key == key)
