"""apply(row, event) -> row: one status event moves one job, idempotently, never backwards."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from anchorline.errors import BadInput, Poison
from anchorline.events import (
    MAX_ATTEMPTS,
    MAX_GENERATION,
    MAX_TENANT,
    STAGES_OF,
    JobStatus,
    Stage,
    StageState,
)
from anchorline.untrusted import parse_json

STAGE_RANK = {"verify": 0, "prove": 1, "anchor": 2, "notify": 3}
STATE_RANK = {
    "queued": 0,
    "running": 1,
    "retrying": 2,
    "succeeded": 3,
    "failed": 4,
    "dead": 5,
    "cancelled": 6,
}
TERMINAL = frozenset({"succeeded", "failed", "dead", "cancelled"})
MAX_ID = 64  # the width of the jobs table's id columns
# A stage's result is one Kafka record (about 1 MB at most) and a few levels deep.
MAX_RESULT_BYTES = 1 << 20
FREE_TEXT = ("error", "error_class", "note")
LONGEST = {"tenant": MAX_TENANT, "error_class": 128, "content_sha256": 66}  # column widths


@dataclass(frozen=True)
class JobRow:
    """One row of the jobs table."""

    job_id: str
    kind: str
    state: str
    stage: str
    created_at: datetime
    updated_at: datetime
    progress: int = 0
    attempts: int = 0
    generation: int = 0
    rank_stage: int = 0
    rank_state: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_class: str | None = None
    tenant: str | None = None
    content_sha256: str | None = None
    priority: str | None = None
    next_attempt_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    trace_id: str | None = None

    @property
    def rank(self) -> tuple[int, int, int, int]:
        return (self.generation, self.rank_stage, self.attempts, self.rank_state)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def check_status(event: JobStatus) -> JobStatus:
    """The event, if a stage could have sent it and the jobs table can hold it; Poison (to the
    dead-letter topic) saying why not."""
    for name in ("job_id", "event_id"):
        if not 1 <= len(getattr(event, name)) <= MAX_ID:
            raise Poison(f"{name} must be 1 to {MAX_ID} characters")
    _within("generation", event.generation, 0, MAX_GENERATION)
    _within("attempt", event.attempt, 0, MAX_ATTEMPTS)
    if event.progress is not None:
        _within("progress", event.progress, 0, 100)
    for name, longest in LONGEST.items():
        value = getattr(event, name)
        if value is not None and len(value) > longest:
            raise Poison(f"{name} must be at most {longest} characters")
    if event.stage not in STAGES_OF[event.kind] and event.stage is not Stage.NOTIFY:
        raise Poison(f"a {event.kind} job has no {event.stage} stage")
    if event.result is not None:
        try:
            result_of(event.result)
        except BadInput as exc:
            raise Poison(str(exc)) from exc
    return _storable(event)


def _storable(event: JobStatus) -> JobStatus:
    """The event with NUL characters in its free text (a reason quoting hostile input) written
    out as `\\x00`: PostgreSQL's text columns cannot hold NUL, and the job must still end."""
    free = {
        name: value.replace("\x00", "\\x00")
        for name in FREE_TEXT
        if (value := getattr(event, name)) is not None and "\x00" in value
    }
    return replace(event, **free) if free else event


def _within(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise Poison(f"{name} must be from {low} to {high}, not {value}")


def check_consistent(row: JobRow | None, event: JobStatus) -> None:
    """Poison if the event is about another job than the row it would change: another kind, or
    another tenant (anchor statuses name none: AnchorRequested carries no tenants)."""
    if row is None:
        return
    if str(event.kind) != row.kind:
        raise Poison(f"a status of a {event.kind} job for the {row.kind} job {row.job_id}")
    silent = event.tenant is None and event.stage is Stage.ANCHOR
    if event.tenant != row.tenant and not silent:
        raise Poison(f"a status naming another tenant than job {row.job_id}'s")


def result_of(text: str) -> dict[str, Any]:
    """A status's result, parsed within bounds; BadInput if it is not a small JSON object.

    Each status's result is read twice, checked as the batch is decoded (check_status) and
    taken into its row when applied: the parse of a small one is remembered between the two
    (parsing was a third of the projector thread's busy samples in a proof run, py-spy). Each
    caller gets its own copy of the top level (nothing changes a result's insides); a large one
    is parsed each time, so that the memory held stays bounded whatever the records say."""
    if len(text) > MEMO_CHARS:
        return _parse_result(text)
    return dict(_remembered_result(text))


MEMO_CHARS = 4 * 1024
MEMO_RESULTS = 512  # a batch's statuses (500 records at most)


@lru_cache(maxsize=MEMO_RESULTS)
def _remembered_result(text: str) -> dict[str, Any]:
    return _parse_result(text)


def _parse_result(text: str) -> dict[str, Any]:
    result = parse_json(text, what="result", max_bytes=MAX_RESULT_BYTES)
    if not isinstance(result, dict):
        raise BadInput("result must be a JSON object")
    return result


def event_rank(event: JobStatus) -> tuple[int, int, int, int]:
    return (event.generation, STAGE_RANK[event.stage], event.attempt, STATE_RANK[event.state])


def job_state(event: JobStatus) -> str:
    if event.state is StageState.SUCCEEDED and not event.final:
        return "running"  # between stages: this one is done, the next has not started
    return str(event.state)


def is_progress_only(event: JobStatus) -> bool:
    return event.state is StageState.RUNNING and event.progress not in (None, 0)


def new_row(event: JobStatus) -> JobRow:
    created = event.submitted_at or event.occurred_at
    return JobRow(
        job_id=event.job_id,
        kind=str(event.kind),
        state="queued",
        stage=str(event.stage),
        created_at=created,
        updated_at=event.occurred_at,
        rank_state=-1,
        tenant=event.tenant,
        content_sha256=event.content_sha256,
        priority=str(event.priority) if event.priority else None,
    )


def apply(row: JobRow | None, event: JobStatus) -> JobRow | None:
    """The row after `event`, or None when the event changes nothing (late, duplicate, stale);
    Poison if no stage could have sent it for this job."""
    check_consistent(row, event)
    if event.stage is Stage.NOTIFY:
        return None  # a webhook delivery: in the history only
    current = row or new_row(event)
    if current.terminal and event.generation <= current.generation:
        return None
    if event.state is StageState.CANCELLED:
        # Cancelling ends the run it names wherever that run is (the gateway does not know
        # which stage has the job); a newer run is not the one that was cancelled.
        return _transition(current, event) if event.generation >= current.generation else None
    if _of_another_batch(current, event):
        return None
    if event_rank(event) > current.rank:
        return _transition(current, event)
    if event_rank(event) == current.rank and (event.progress or 0) > current.progress:
        return replace(current, progress=event.progress or 0, updated_at=event.occurred_at)
    return None if row is not None else current


def _of_another_batch(row: JobRow, event: JobStatus) -> bool:
    """An anchor result for another root than the one the job's proof is under. A request
    delivered twice (another system's producer retrying) can put one job in two prove batches,
    each anchored; the row keeps the first proof, so only that batch's anchor may complete it:
    a receipt needs the proof and the anchor of one root."""
    if event.stage is not Stage.ANCHOR or not event.result:
        return False
    proof = row.result.get("prove")
    proven = proof.get("root") if isinstance(proof, dict) else None
    anchored = result_of(event.result).get("root")
    return proven is not None and anchored is not None and anchored != proven


def _transition(row: JobRow, event: JobStatus) -> JobRow:
    result = dict(row.result)
    if event.result:
        result[str(event.stage)] = result_of(event.result)
    state = job_state(event)
    succeeded = event.state is StageState.SUCCEEDED
    return replace(
        row,
        state=state,
        stage=str(event.stage),
        progress=event.progress if event.progress is not None else row.progress,
        attempts=event.attempt,
        generation=event.generation,
        rank_stage=STAGE_RANK[event.stage],
        rank_state=STATE_RANK[event.state],
        result=result,
        error=None if succeeded else event.error or row.error,
        error_class=None if succeeded else event.error_class or row.error_class,
        next_attempt_at=event.next_attempt_at,
        content_sha256=event.content_sha256 or row.content_sha256,
        priority=str(event.priority) if event.priority else row.priority,
        started_at=row.started_at or (event.occurred_at if state != "queued" else None),
        finished_at=event.occurred_at if state in TERMINAL else None,
        updated_at=event.occurred_at,
    )
