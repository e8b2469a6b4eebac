"""The jobs table as the projector sees it: load rows, apply events, write back, one transaction."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields, replace
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from anchorline.errors import Poison
from anchorline.events import JOB_ID_RE, JobRequested, JobStatus, Stage, utcnow
from anchorline.store.db import job_events, job_requests, jobs
from anchorline.stream import codec
from anchorline_projector.apply import TERMINAL, JobRow, apply, is_progress_only

ROW_FIELDS = [spec.name for spec in fields(JobRow)]
PRUNE_BATCH = 5_000  # jobs a pruning transaction deletes at most
Refuse = Callable[[JobStatus, Poison], None]


def _ignore(event: JobStatus, exc: Poison) -> None:
    pass


# Bind names differ from the columns': SQLAlchemy reserves a column's own name for its SET value.
UPDATE_ROW = (
    jobs.update()
    .where(jobs.c.job_id == sa.bindparam("new_job_id"))
    .values(
        {
            name: sa.bindparam(f"new_{name}", type_=jobs.c[name].type)
            for name in ROW_FIELDS
            if name != "job_id"
        }
    )
)


# On PostgreSQL a batch's rows go in one statement each for jobs, history and requests, every
# column an array (unnest): the same text whatever the batch's size, so prepared once, and one
# execution where an executemany ran one a row. (bench/projector.py, README: the store's CPU and
# PostgreSQL's a status.)
PG_TYPES = {
    "job_id": "text",
    "kind": "text",
    "state": "text",
    "stage": "text",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
    "progress": "int4",
    "attempts": "int4",
    "generation": "int4",
    "rank_stage": "int4",
    "rank_state": "int4",
    "result": "json",
    "error": "text",
    "error_class": "text",
    "tenant": "text",
    "content_sha256": "text",
    "priority": "text",
    "next_attempt_at": "timestamptz",
    "started_at": "timestamptz",
    "finished_at": "timestamptz",
    "trace_id": "text",
}
HISTORY_COLUMNS = {
    "event_id": "text",
    "job_id": "text",
    "stage": "text",
    "state": "text",
    "attempt": "int4",
    "generation": "int4",
    "applied": "bool",
    "error": "text",
    "note": "text",
    "occurred_at": "timestamptz",
}
REQUEST_COLUMNS = {
    "job_id": "text",
    "value": "bytea",
    "callback_url": "text",
    "stored_at": "timestamptz",
}


def _unnest(table: str, columns: Mapping[str, str], tail: str = "") -> str:
    arrays = ", ".join(
        f"%({name})b::text[]::json[]" if kind == "json" else f"%({name})b::{kind}[]"
        for name, kind in columns.items()
    )
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}){tail}"


UPSERT_ROWS_PG = _unnest(
    "jobs",
    PG_TYPES,
    " ON CONFLICT (job_id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in PG_TYPES if name != "job_id"),
)
INSERT_HISTORY_PG = _unnest("job_events", HISTORY_COLUMNS)
KEEP_REQUESTS_PG = _unnest("job_requests", REQUEST_COLUMNS, " ON CONFLICT (job_id) DO NOTHING")
LOAD_ROWS_PG = sa.select(jobs).where(
    jobs.c.job_id == sa.func.any(sa.bindparam("ids", type_=postgresql.ARRAY(sa.String)))
)
# An IN list of as many values as the batch has jobs that ended: a new statement text, compiled
# and planned anew, for every batch (8 % of the projector's time); an array is one statement.
CALLBACKS_PG = sa.select(job_requests.c.job_id, job_requests.c.callback_url).where(
    job_requests.c.job_id == sa.func.any(sa.bindparam("ids", type_=postgresql.ARRAY(sa.String))),
    job_requests.c.callback_url.is_not(None),
)
KNOWN_EVENTS_PG = sa.select(job_events.c.event_id).where(
    job_events.c.event_id == sa.func.any(sa.bindparam("ids", type_=postgresql.ARRAY(sa.String)))
)


def _columns(rows: Sequence[Mapping[str, Any]], names: Iterable[str]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in names}


def _json_text(value: Any) -> str | None:
    """A result as JSON text: orjson's, or json's for what orjson cannot write (an integer
    past 64 bits, a lone surrogate), as SQLAlchemy's JSON type would have written it."""
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def _is_pg(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


def _row(record: Any) -> JobRow:
    values = dict(record._mapping)
    values["result"] = values["result"] or {}
    return JobRow(**{name: values[name] for name in ROW_FIELDS})


class SqlJobStore:
    """Applies status events to the jobs table; the only writer of that table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def apply_batch(
        self,
        events: Sequence[JobStatus],
        *,
        refuse: Refuse = _ignore,
        ended: list[JobRow] | None = None,
        traces: Mapping[str, str] | None = None,
        requests: Sequence[tuple[bytes | None, bytes | None]] = (),
        callbacks: dict[str, str] | None = None,
    ) -> int:
        """Apply events in order in one transaction; returns how many changed a row. An event
        no stage could have sent for its job changes nothing and goes to `refuse`; a row that
        reached a final state (of a new run) is appended to `ended` once the transaction
        committed. `traces` are the trace ids the events carried (by event id): a row keeps the
        first one it is given. In the same transaction, so in fewer round trips to the database
        (each one a wait for a busy machine's scheduler): `requests` kept first, as
        keep_requests keeps them, and `callbacks` given the callback URLs of the jobs that
        ended."""
        if not events and not requests:
            return 0
        finished: list[JobRow] = []
        changed: dict[str, JobRow] = {}
        with self.engine.begin() as connection:
            if requests:
                self._keep(connection, requests)
            if events:
                changed = self._apply(connection, events, refuse, finished, traces or {})
            if finished and callbacks is not None:
                callbacks.update(self._callbacks(connection, {row.job_id for row in finished}))
        if ended is not None:
            ended.extend(finished)
        return len(changed)

    def _apply(
        self,
        connection: Connection,
        events: Sequence[JobStatus],
        refuse: Refuse,
        ended: list[JobRow],
        traces: Mapping[str, str],
    ) -> dict[str, JobRow]:
        rows = self._load(connection, {event.job_id for event in events})
        existing = set(rows)
        # An event of a job without a row was never applied (its first status makes the row,
        # pruning takes the history with it), so only the others are looked up; a webhook's
        # delivery is kept in the history alone, rowless or not.
        maybe_known = [
            event.event_id
            for event in events
            if event.job_id in existing or event.stage is Stage.NOTIFY
        ]
        known = self._known_events(connection, maybe_known) if maybe_known else set()
        changed: dict[str, JobRow] = {}
        history: list[dict[str, Any]] = []
        for event in events:
            if event.event_id in known:
                continue
            try:
                applied = apply(rows.get(event.job_id), event)
            except Poison as exc:
                refuse(event, exc)
                continue
            known.add(event.event_id)
            after = _traced(applied, rows.get(event.job_id), traces.get(event.event_id))
            if after is not None:
                if _ends(rows.get(event.job_id), after):
                    ended.append(after)
                rows[event.job_id] = changed[event.job_id] = after
            if not is_progress_only(event):
                history.append(_history(event, applied=applied is not None))
        self._save(connection, changed, existing=existing)
        if history and _is_pg(connection):
            connection.exec_driver_sql(INSERT_HISTORY_PG, _columns(history, HISTORY_COLUMNS))
        elif history:
            connection.execute(job_events.insert(), history)
        return changed

    def keep_requests(self, requests: Sequence[tuple[bytes | None, bytes | None]]) -> int:
        """Keep each job's request (key, value as published) for a retry; the first kept for a
        job id stays. A record keyed by no job id is not kept (the verifier dead-letters it)."""
        with self.engine.begin() as connection:
            return self._keep(connection, requests)

    def _keep(
        self, connection: Connection, requests: Sequence[tuple[bytes | None, bytes | None]]
    ) -> int:
        now = utcnow()
        rows = {
            job_id: {
                "job_id": job_id,
                "value": value,
                "stored_at": now,
                "callback_url": _callback_of(value),
            }
            for key, value in requests
            if value and JOB_ID_RE.fullmatch(job_id := (key or b"").decode("utf-8", "replace"))
        }
        if rows and _is_pg(connection):
            kept = _columns(list(rows.values()), REQUEST_COLUMNS)
            connection.exec_driver_sql(KEEP_REQUESTS_PG, kept)
        elif rows:
            insert = sqlite.insert(job_requests).on_conflict_do_nothing()
            connection.execute(insert, list(rows.values()))
        return len(rows)

    def callbacks(self, job_ids: Iterable[str]) -> dict[str, str]:
        """The callback URLs the requests of these jobs named."""
        with self.engine.connect() as connection:
            return self._callbacks(connection, set(job_ids))

    def _callbacks(self, connection: Connection, job_ids: set[str]) -> dict[str, str]:
        if _is_pg(connection):
            found = connection.execute(CALLBACKS_PG, {"ids": list(job_ids)})
        else:
            found = connection.execute(
                sa.select(job_requests.c.job_id, job_requests.c.callback_url).where(
                    job_requests.c.job_id.in_(job_ids), job_requests.c.callback_url.is_not(None)
                )
            )
        return {job_id: url for job_id, url in found}

    def prune(self, before: datetime, *, limit: int = PRUNE_BATCH) -> int:
        """Delete up to `limit` jobs that ended and were created and last changed before
        `before`, with their history and kept request; how many. A job in flight stays,
        however old (the jobs table's (state, created_at) index finds the candidates)."""
        old = (
            sa.select(jobs.c.job_id)
            .where(
                jobs.c.state.in_(sorted(TERMINAL)),
                jobs.c.created_at < before,
                jobs.c.updated_at < before,
            )
            .limit(limit)
        )
        with self.engine.begin() as connection:
            gone = list(connection.execute(old).scalars())
            if gone:
                connection.execute(job_events.delete().where(job_events.c.job_id.in_(gone)))
                connection.execute(job_requests.delete().where(job_requests.c.job_id.in_(gone)))
                connection.execute(jobs.delete().where(jobs.c.job_id.in_(gone)))
        return len(gone)

    def clear(self) -> None:
        """Remove every job and its history (before a rebuild)."""
        with self.engine.begin() as connection:
            connection.execute(job_events.delete())
            connection.execute(jobs.delete())

    def _load(self, connection: Connection, job_ids: set[str]) -> dict[str, JobRow]:
        if _is_pg(connection):
            found = connection.execute(LOAD_ROWS_PG, {"ids": list(job_ids)})
        else:
            found = connection.execute(sa.select(jobs).where(jobs.c.job_id.in_(job_ids)))
        return {record.job_id: _row(record) for record in found}

    def _known_events(self, connection: Connection, event_ids: list[str]) -> set[str]:
        if _is_pg(connection):
            return set(connection.execute(KNOWN_EVENTS_PG, {"ids": event_ids}).scalars())
        query = sa.select(job_events.c.event_id).where(job_events.c.event_id.in_(event_ids))
        return set(connection.execute(query).scalars())

    def _save(self, connection: Connection, changed: dict[str, JobRow], existing: set[str]) -> None:
        if changed and _is_pg(connection):
            rows = [_values(row) for row in changed.values()]
            columns = _columns(rows, PG_TYPES)
            columns["result"] = [_json_text(result) for result in columns["result"]]
            connection.exec_driver_sql(UPSERT_ROWS_PG, columns)
            return
        inserts = [_values(row) for job_id, row in changed.items() if job_id not in existing]
        if inserts:
            connection.execute(jobs.insert(), inserts)
        updates = [
            {f"new_{name}": value for name, value in _values(row).items()}
            for job_id, row in changed.items()
            if job_id in existing
        ]
        if updates:  # one executemany (psycopg pipelines it), not a statement per row
            connection.execute(UPDATE_ROW, updates)


def _traced(after: JobRow | None, before: JobRow | None, trace_id: str | None) -> JobRow | None:
    """The row changed by an event, carrying the event's trace id if it had none yet."""
    row = after or before
    if trace_id is None or row is None or row.trace_id is not None:
        return after
    return replace(row, trace_id=trace_id)


def _ends(before: JobRow | None, after: JobRow) -> bool:
    if not after.terminal:
        return False
    return before is None or not before.terminal or after.generation > before.generation


def _callback_of(value: bytes) -> str | None:
    """The request's callback URL, if it decodes (one that does not is dead-lettered by the
    verifier, and never ends)."""
    try:
        url = codec.field_of(value, JobRequested, "callback_url")
    except Poison:
        return None
    return url if isinstance(url, str) else None


def _values(row: JobRow) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies each result, which took half the store's time.
    return {name: getattr(row, name) for name in ROW_FIELDS}


def _history(event: JobStatus, *, applied: bool) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "job_id": event.job_id,
        "stage": str(event.stage),
        "state": str(event.state),
        "attempt": event.attempt,
        "generation": event.generation,
        "applied": applied,
        "error": event.error,
        "note": event.note,
        "occurred_at": event.occurred_at,
    }
