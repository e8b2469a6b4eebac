"""What the projector tells the notifier when a job ends: its record, and where to send it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from anchorline.events import JobKind, NotifyRequested, Stage, StageState
from anchorline_projector.apply import JobRow

RECORD_FIELDS = (
    "job_id",
    "kind",
    "state",
    "stage",
    "progress",
    "attempts",
    "result",
    "error",
    "error_class",
    "tenant",
    "content_sha256",
    "next_attempt_at",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
)


def record(row: JobRow) -> dict[str, Any]:
    """The row as GET /v1/jobs/{id} shows it, without the history."""
    return {name: _plain(getattr(row, name)) for name in RECORD_FIELDS}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value


def notice(
    row: JobRow, *, callbacks: Mapping[str, str], defaults: Mapping[str, str]
) -> NotifyRequested | None:
    """The notification of an ended job, or None when it has no webhook to call (neither its
    own nor a default for its tenant or for every tenant)."""
    callback = callbacks.get(row.job_id)
    if callback is None and (row.tenant or "*") not in defaults and "*" not in defaults:
        return None
    return NotifyRequested(
        job_id=row.job_id,
        kind=JobKind(row.kind),
        stage=Stage(row.stage),
        state=StageState(row.state),
        finished_at=row.finished_at or row.updated_at,
        record=json.dumps(record(row), separators=(",", ":"), ensure_ascii=False),
        generation=row.generation,
        tenant=row.tenant,
        callback_url=callback,
    )


def notice_without_result(event: NotifyRequested) -> NotifyRequested:
    """The notification with the record's result left out (too large for one Kafka record)."""
    shown = json.loads(event.record)
    shown["result"] = {"omitted": "too large for a webhook; GET /v1/jobs/{id} has it"}
    return replace(event, record=json.dumps(shown, separators=(",", ":"), ensure_ascii=False))
