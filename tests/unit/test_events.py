from __future__ import annotations

from datetime import UTC, datetime

import pytest

from anchorline.events import (
    STAGES_OF,
    AnchorRequested,
    JobKind,
    JobRef,
    JobRequested,
    JobStatus,
    Priority,
    ProveRequested,
    Stage,
    StageState,
    is_last_stage,
    refs_of,
    utcnow,
)

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_each_kind_runs_its_stages_in_order() -> None:
    assert STAGES_OF[JobKind.VERIFY] == (Stage.VERIFY,)
    assert STAGES_OF[JobKind.PROOF] == (Stage.VERIFY, Stage.PROVE)
    assert STAGES_OF[JobKind.ANCHOR] == (Stage.VERIFY, Stage.PROVE, Stage.ANCHOR)
    assert is_last_stage(JobKind.PROOF, Stage.PROVE)
    assert not is_last_stage(JobKind.ANCHOR, Stage.PROVE)


@pytest.mark.parametrize(
    ("kind", "stage", "state", "final"),
    [
        (JobKind.VERIFY, Stage.VERIFY, StageState.SUCCEEDED, True),
        (JobKind.PROOF, Stage.VERIFY, StageState.SUCCEEDED, False),
        (JobKind.PROOF, Stage.PROVE, StageState.SUCCEEDED, True),
        (JobKind.ANCHOR, Stage.PROVE, StageState.SUCCEEDED, False),
        (JobKind.ANCHOR, Stage.VERIFY, StageState.FAILED, True),
        (JobKind.ANCHOR, Stage.PROVE, StageState.DEAD, True),
        (JobKind.VERIFY, Stage.VERIFY, StageState.RUNNING, False),
        (JobKind.VERIFY, Stage.VERIFY, StageState.RETRYING, False),
        (JobKind.VERIFY, Stage.VERIFY, StageState.QUEUED, False),
    ],
)
def test_a_status_is_final_when_it_ends_the_job(
    kind: JobKind, stage: Stage, state: StageState, final: bool
) -> None:
    assert JobRef("j", kind).status(stage, state).final is final


def test_a_status_repeats_what_the_ref_knows() -> None:
    ref = JobRef("j", JobKind.PROOF, AT, "acme", "0xabc")
    status = ref.status(Stage.PROVE, StageState.RUNNING, attempt=2, progress=40)
    assert (status.job_id, status.kind, status.submitted_at, status.tenant) == (
        "j",
        JobKind.PROOF,
        AT,
        "acme",
    )
    assert (status.content_sha256, status.attempt, status.progress) == ("0xabc", 2, 40)


def test_every_status_gets_its_own_event_id() -> None:
    ref = JobRef("j", JobKind.VERIFY)
    ids = {ref.status(Stage.VERIFY, StageState.RUNNING).event_id for _ in range(50)}
    assert len(ids) == 50


def test_refs_of_each_event_type() -> None:
    request = JobRequested("a", JobKind.VERIFY, "sha256:x", "{}", "0x", AT, tenant="t")
    assert refs_of(request) == [JobRef("a", JobKind.VERIFY, AT, "t", priority=Priority.NORMAL)]
    prove = ProveRequested("b", JobKind.ANCHOR, "0xc", "0xm", "0xs", AT, tenant="t")
    assert refs_of(prove) == [JobRef("b", JobKind.ANCHOR, AT, "t", "0xc", priority=Priority.NORMAL)]
    anchor = AnchorRequested("batch", "0xroot", ["c", "d"], AT)
    assert refs_of(anchor) == [JobRef("c", JobKind.ANCHOR), JobRef("d", JobKind.ANCHOR)]
    status = JobStatus("e", JobKind.PROOF, Stage.PROVE, StageState.RUNNING, submitted_at=AT)
    assert refs_of(status) == [JobRef("e", JobKind.PROOF, AT)]


def test_utcnow_is_utc_to_the_millisecond() -> None:
    now = utcnow()
    assert now.tzinfo is UTC
    assert now.microsecond % 1000 == 0
