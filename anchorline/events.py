"""The event types of the public contract, one per schema in schemas/."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from anchorline.errors import Poison
from anchorline.tenants import RULE as TENANT_RULE
from anchorline.tenants import is_tenant

# Limits of the public contract (docs/contract.md): what no stage writes is forged.
JOB_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
MAX_TENANT = 128
MAX_ATTEMPTS = 10_000
MAX_GENERATION = 1_000_000  # a job replayed a million times


class JobKind(StrEnum):
    VERIFY = "verify"
    PROOF = "proof"
    ANCHOR = "anchor"


class Priority(StrEnum):
    """The order in which a stage takes jobs when it is behind (stream/picking.py)."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


PRIORITIES: tuple[Priority, ...] = (Priority.HIGH, Priority.NORMAL, Priority.LOW)  # first first


def highest(priorities: Iterable[Priority]) -> Priority:
    """The first of `priorities` in PRIORITIES' order (normal for none): a batch of jobs is
    taken as soon as its most urgent job would be."""
    given = set(priorities)
    return next((priority for priority in PRIORITIES if priority in given), Priority.NORMAL)


class Stage(StrEnum):
    VERIFY = "verify"
    PROVE = "prove"
    ANCHOR = "anchor"
    NOTIFY = "notify"  # a webhook of an ended job: beside the pipeline, never moves a job


class StageState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


PIPELINE: tuple[Stage, ...] = (Stage.VERIFY, Stage.PROVE, Stage.ANCHOR)  # what jobs pass
STAGES_OF: dict[JobKind, tuple[Stage, ...]] = {
    JobKind.VERIFY: (Stage.VERIFY,),
    JobKind.PROOF: (Stage.VERIFY, Stage.PROVE),
    JobKind.ANCHOR: (Stage.VERIFY, Stage.PROVE, Stage.ANCHOR),
}


def is_last_stage(kind: JobKind, stage: Stage) -> bool:
    return STAGES_OF[kind][-1] is stage


def utcnow() -> datetime:
    """Now, to the millisecond: the precision of the schemas' timestamp-millis."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class JobRequested:
    job_id: str
    kind: JobKind
    content_uri: str
    manifest: str
    signature: str
    submitted_at: datetime
    signature_scheme: str = "eip191"
    tenant: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    callback_url: str | None = None
    priority: Priority = Priority.NORMAL
    schedule_id: str | None = None


@dataclass(frozen=True)
class ProveRequested:
    job_id: str
    kind: JobKind
    content_sha256: str
    manifest_sha256: str
    signer: str
    submitted_at: datetime
    tenant: str | None = None
    priority: Priority = Priority.NORMAL


@dataclass(frozen=True)
class AnchorRequested:
    batch_id: str
    root: str
    job_ids: list[str]
    requested_at: datetime
    priority: Priority = Priority.NORMAL


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    kind: JobKind
    stage: Stage
    state: StageState
    occurred_at: datetime = field(default_factory=utcnow)
    event_id: str = field(default_factory=new_id)
    final: bool = False
    attempt: int = 1
    generation: int = 0
    progress: int | None = None
    result: str | None = None
    error: str | None = None
    error_class: str | None = None
    next_attempt_at: datetime | None = None
    submitted_at: datetime | None = None
    tenant: str | None = None
    content_sha256: str | None = None
    note: str | None = None
    priority: Priority | None = None


@dataclass(frozen=True)
class NotifyRequested:
    job_id: str
    kind: JobKind
    stage: Stage
    state: StageState
    finished_at: datetime
    record: str
    generation: int = 0
    tenant: str | None = None
    callback_url: str | None = None


Event = JobRequested | ProveRequested | AnchorRequested | JobStatus | NotifyRequested


@dataclass(frozen=True)
class JobRef:
    """What every status event of one job repeats."""

    job_id: str
    kind: JobKind
    submitted_at: datetime | None = None
    tenant: str | None = None
    content_sha256: str | None = None
    generation: int = 0
    priority: Priority | None = None

    def status(self, stage: Stage, state: StageState, **changes: object) -> JobStatus:
        final = state in (StageState.FAILED, StageState.DEAD, StageState.CANCELLED) or (
            state is StageState.SUCCEEDED and is_last_stage(self.kind, stage)
        )
        return JobStatus(
            job_id=self.job_id,
            kind=self.kind,
            stage=stage,
            state=state,
            final=final,
            submitted_at=self.submitted_at,
            tenant=self.tenant,
            content_sha256=self.content_sha256,
            priority=self.priority,
            **{"generation": self.generation, **changes},  # type: ignore[arg-type]
        )


def submission(job: JobRequested) -> list[Event]:
    """What submitting a job publishes: its request and its first status, `queued`."""
    ref = refs_of(job)[0]  # its tenant and priority with it
    return [job, ref.status(Stage.VERIFY, StageState.QUEUED, attempt=1, progress=0)]


def refs_of(event: Event) -> list[JobRef]:
    """The jobs a message is about (a batch to anchor is about many)."""
    if isinstance(event, AnchorRequested):
        return [JobRef(job_id, JobKind.ANCHOR) for job_id in event.job_ids]
    if isinstance(event, JobRequested):
        return [
            JobRef(
                event.job_id, event.kind, event.submitted_at, event.tenant, priority=event.priority
            )
        ]
    if isinstance(event, ProveRequested):
        return [
            JobRef(
                *(event.job_id, event.kind, event.submitted_at, event.tenant),
                content_sha256=event.content_sha256,
                priority=event.priority,
            )
        ]
    if isinstance(event, NotifyRequested):
        return [JobRef(event.job_id, event.kind, None, event.tenant, None, event.generation)]
    return [
        JobRef(event.job_id, event.kind, event.submitted_at, event.tenant, priority=event.priority)
    ]


def check_refs(event: Event) -> Event:
    """The event, if every job it names has an id and tenant within the contract's limits;
    Poison saying which does not (no status could be written for such a job)."""
    for ref in refs_of(event):
        if not JOB_ID_RE.fullmatch(ref.job_id):
            raise Poison(
                f"job id {ref.job_id[:80]!r} is not 1 to 64 characters of A-Z a-z 0-9 . _ : -"
            )
        if ref.tenant is not None and not is_tenant(ref.tenant):
            raise Poison(f"tenant of job {ref.job_id} is not {TENANT_RULE}")
    return event
