from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from datetime import datetime

import pytest

from anchorline.errors import BadInput, Poison
from anchorline.events import JobKind, JobStatus, Stage, StageState
from anchorline_projector.apply import JobRow, apply, check_status, is_progress_only, job_state

MakeStatus = Callable[..., JobStatus]
At = Callable[[float], datetime]

VERIFIED = json.dumps({"status": "OK"})
PROVEN = json.dumps({"root": "0x01"})


def fold(events: Sequence[JobStatus]) -> JobRow:
    row: JobRow | None = None
    for event in events:
        row = apply(row, event) or row
    assert row is not None
    return row


def test_first_event_creates_the_row(make_status: MakeStatus, at: At) -> None:
    row = apply(None, make_status(StageState.QUEUED, attempt=1, progress=0, tenant="acme"))
    assert row is not None
    assert (row.job_id, row.kind, row.state, row.stage) == ("job-1", "proof", "queued", "verify")
    assert row.created_at == at(0)
    assert row.tenant == "acme"
    assert row.started_at is None and row.finished_at is None


def test_a_proof_job_runs_through_its_stages(make_status: MakeStatus, at: At) -> None:
    events = [
        make_status(StageState.QUEUED, at=0),
        make_status(StageState.RUNNING, at=1, progress=0),
        make_status(StageState.SUCCEEDED, at=2, progress=100, result=VERIFIED),
        make_status(StageState.RUNNING, stage=Stage.PROVE, at=3, progress=0),
        make_status(
            StageState.SUCCEEDED, stage=Stage.PROVE, at=4, progress=100, result=PROVEN, final=True
        ),
    ]
    row = fold(events)
    assert (row.state, row.stage, row.progress) == ("succeeded", "prove", 100)
    assert row.result == {"verify": {"status": "OK"}, "prove": {"root": "0x01"}}
    assert row.started_at == at(1)
    assert row.finished_at == at(4)
    assert row.updated_at == at(4)
    assert row.created_at == at(0)


def test_a_stage_that_succeeded_but_is_not_the_last_shows_running(make_status: MakeStatus) -> None:
    event = make_status(StageState.SUCCEEDED, at=2, progress=100, result=VERIFIED, final=False)
    assert job_state(event) == "running"
    row = fold([make_status(StageState.QUEUED), event])
    assert row.state == "running"
    assert row.stage == "verify"
    assert row.finished_at is None
    assert not row.terminal


def test_a_late_running_after_succeeded_is_ignored(make_status: MakeStatus) -> None:
    row = fold(
        [make_status(StageState.QUEUED), make_status(StageState.SUCCEEDED, at=2, result=VERIFIED)]
    )
    assert apply(row, make_status(StageState.RUNNING, at=1, progress=0)) is None
    assert apply(row, make_status(StageState.QUEUED, at=0)) is None


def test_a_duplicate_event_is_ignored(make_status: MakeStatus) -> None:
    event = make_status(StageState.RUNNING, at=1, progress=40)
    row = fold([make_status(StageState.QUEUED), event])
    assert apply(row, event) is None


def test_progress_only_goes_up(make_status: MakeStatus, at: At) -> None:
    row = fold([make_status(StageState.QUEUED), make_status(StageState.RUNNING, at=1, progress=0)])
    higher = apply(row, make_status(StageState.RUNNING, at=2, progress=50))
    assert higher is not None
    assert (higher.progress, higher.updated_at, higher.state) == (50, at(2), "running")
    assert apply(higher, make_status(StageState.RUNNING, at=3, progress=30)) is None
    assert apply(higher, make_status(StageState.RUNNING, at=3, progress=50)) is None


def test_progress_restarts_with_a_new_attempt(make_status: MakeStatus, at: At) -> None:
    row = fold(
        [
            make_status(StageState.RUNNING, at=1, progress=0),
            make_status(StageState.RUNNING, at=2, progress=60),
            make_status(StageState.RETRYING, at=3, error="rpc down", next_attempt_at=at(5)),
        ]
    )
    assert (row.state, row.progress, row.error, row.next_attempt_at) == (
        "retrying",
        60,
        "rpc down",
        at(5),
    )
    again = apply(row, make_status(StageState.RUNNING, at=5, attempt=2, progress=0))
    assert again is not None
    assert (again.state, again.attempts, again.progress, again.next_attempt_at) == (
        "running",
        2,
        0,
        None,
    )


def test_success_clears_the_error_of_an_earlier_attempt(make_status: MakeStatus) -> None:
    row = fold(
        [
            make_status(StageState.RETRYING, at=1, error="rpc down", error_class="Retryable"),
            make_status(StageState.RUNNING, at=2, attempt=2, progress=0),
            make_status(StageState.SUCCEEDED, at=3, attempt=2, result=VERIFIED),
        ]
    )
    assert (row.error, row.error_class) == (None, None)
    assert row.attempts == 2


def test_a_terminal_row_is_sticky(make_status: MakeStatus, at: At) -> None:
    failed = fold(
        [
            make_status(StageState.RUNNING, at=1, progress=0),
            make_status(StageState.FAILED, at=2, final=True, error="bad signature"),
        ]
    )
    assert failed.terminal and failed.finished_at == at(2)
    later = [
        make_status(StageState.RUNNING, stage=Stage.PROVE, at=3, progress=0),
        make_status(StageState.SUCCEEDED, stage=Stage.ANCHOR, at=4, final=True, attempt=9),
        make_status(StageState.DEAD, at=5, attempt=3),
    ]
    for event in later:
        assert apply(failed, event) is None


def test_a_succeeded_job_is_sticky_too(make_status: MakeStatus) -> None:
    done = fold([make_status(StageState.SUCCEEDED, kind=JobKind.VERIFY, at=1, final=True)])
    assert done.state == "succeeded"
    assert apply(done, make_status(StageState.RETRYING, kind=JobKind.VERIFY, attempt=2)) is None


def test_a_higher_generation_reopens_a_terminal_row(make_status: MakeStatus, at: At) -> None:
    failed = fold(
        [
            make_status(StageState.RUNNING, at=1, progress=0),
            make_status(StageState.FAILED, at=2, final=True, error="boom"),
        ]
    )
    replay = apply(failed, make_status(StageState.QUEUED, at=10, generation=1))
    assert replay is not None
    assert (replay.state, replay.generation, replay.finished_at) == ("queued", 1, None)
    assert replay.started_at == at(1)
    assert apply(replay, make_status(StageState.FAILED, at=11, final=True, error="old")) is None


def test_results_are_kept_per_stage(make_status: MakeStatus) -> None:
    row = fold(
        [
            make_status(StageState.SUCCEEDED, at=1, result=json.dumps({"try": 1})),
            make_status(StageState.SUCCEEDED, stage=Stage.PROVE, at=2, result=PROVEN),
            make_status(StageState.SUCCEEDED, at=3, generation=1, result=json.dumps({"try": 2})),
        ]
    )
    assert row.result == {"verify": {"try": 2}, "prove": {"root": "0x01"}}


def test_an_anchor_of_another_batch_than_the_jobs_proof_leaves_the_row_alone(
    make_status: MakeStatus,
) -> None:
    # The same request delivered twice: the job is proven in two batches, both anchored.
    def anchored(root: str, at: float) -> JobStatus:
        result = json.dumps({"root": root, "txHash": "0x" + root[-2:] * 32})
        return make_status(
            StageState.SUCCEEDED,
            kind=JobKind.ANCHOR,
            stage=Stage.ANCHOR,
            at=at,
            result=result,
            final=True,
        )

    proven = [
        make_status(StageState.SUCCEEDED, kind=JobKind.ANCHOR, at=1, result=VERIFIED),
        make_status(
            StageState.SUCCEEDED, kind=JobKind.ANCHOR, stage=Stage.PROVE, at=2, result=PROVEN
        ),
        make_status(
            StageState.SUCCEEDED,
            kind=JobKind.ANCHOR,
            stage=Stage.PROVE,
            at=3,
            result=json.dumps({"root": "0x02"}),
        ),
    ]
    row = fold([*proven, anchored("0x02", 4)])
    assert (row.state, row.stage) == ("running", "prove")  # still waiting for its own anchor
    row = fold([*proven, anchored("0x02", 4), anchored("0x01", 5)])
    assert (row.state, row.result["prove"]["root"], row.result["anchor"]["root"]) == (
        "succeeded",
        "0x01",
        "0x01",
    )


def test_content_hash_is_kept_once_known(make_status: MakeStatus) -> None:
    row = fold(
        [
            make_status(StageState.SUCCEEDED, at=1, content_sha256="0xabc"),
            make_status(StageState.RUNNING, stage=Stage.PROVE, at=2),
        ]
    )
    assert row.content_sha256 == "0xabc"


def test_out_of_order_arrival_ends_in_the_same_row(make_status: MakeStatus) -> None:
    events = [
        make_status(StageState.QUEUED, at=0),
        make_status(StageState.RUNNING, at=1, progress=0),
        make_status(StageState.SUCCEEDED, at=2, result=VERIFIED),
        make_status(StageState.RUNNING, stage=Stage.PROVE, at=3, progress=0),
        make_status(StageState.SUCCEEDED, stage=Stage.PROVE, at=4, final=True, result=PROVEN),
    ]
    in_order = fold(events)
    # Results reach the topic in stage order (each stage's result is in the transaction that
    # starts the next); the statuses published outside a transaction can come late.
    shuffled = fold([events[1], events[0], events[2], events[4], events[3]])
    assert shuffled == in_order


def test_progress_only_events_are_running_with_some_progress(make_status: MakeStatus) -> None:
    assert is_progress_only(make_status(StageState.RUNNING, progress=40))
    assert not is_progress_only(make_status(StageState.RUNNING, progress=0))
    assert not is_progress_only(make_status(StageState.RUNNING, progress=None))
    assert not is_progress_only(make_status(StageState.SUCCEEDED, progress=100))


@pytest.mark.parametrize(
    "changes",
    [{"job_id": "x" * 65}, {"job_id": ""}, {"result": "not json"}, {"result": "[1, 2]"}],
    ids=["long-id", "empty-id", "result-not-json", "result-not-object"],
)
def test_a_status_the_table_cannot_hold_is_poison(changes: dict[str, str]) -> None:
    event = JobStatus("job", JobKind.VERIFY, Stage.VERIFY, StageState.SUCCEEDED)
    assert check_status(event) is event
    with pytest.raises(Poison):
        check_status(dataclasses.replace(event, **changes))  # type: ignore[arg-type]


def test_a_deep_result_is_poison_not_a_recursion(make_status: MakeStatus) -> None:
    deep = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(Poison, match="result nests deeper than 32 levels"):
        check_status(make_status(StageState.SUCCEEDED, result=deep))


def test_a_result_over_its_size_limit_is_poison(make_status: MakeStatus) -> None:
    huge = json.dumps({"a": "x" * (1 << 20)})
    with pytest.raises(Poison, match="result is larger than"):
        check_status(make_status(StageState.SUCCEEDED, result=huge))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"generation": -1}, "generation must be from 0 to 1000000, not -1"),
        ({"generation": 7_000_000}, "generation must be from 0 to 1000000"),
        ({"attempt": 2**31 - 1}, "attempt must be from 0 to 10000"),
        ({"progress": 101}, "progress must be from 0 to 100"),
        ({"tenant": "t" * 129}, "tenant must be at most 128 characters"),
        ({"error_class": "E" * 129}, "error_class must be at most 128 characters"),
        ({"stage": Stage.ANCHOR, "kind": JobKind.VERIFY}, "a verify job has no anchor stage"),
    ],
)
def test_a_status_no_stage_could_send_is_poison(
    make_status: MakeStatus, changes: dict[str, object], reason: str
) -> None:
    with pytest.raises(Poison, match=reason):
        check_status(make_status(StageState.FAILED, **changes))


def test_a_status_for_another_tenant_or_kind_leaves_the_job_unchanged(
    make_status: MakeStatus,
) -> None:
    row = fold([make_status(StageState.SUCCEEDED, tenant="acme", final=True)])
    for forged in (
        make_status(StageState.FAILED, at=1, generation=7, tenant="mallory"),
        make_status(StageState.FAILED, at=1, generation=7, tenant=None),
        make_status(StageState.FAILED, at=1, generation=7, tenant="acme", kind=JobKind.ANCHOR),
    ):
        with pytest.raises(Poison, match="a status"):
            apply(row, forged)


def test_anchor_statuses_need_not_name_the_tenant(make_status: MakeStatus) -> None:
    kind = JobKind.ANCHOR
    row = fold([make_status(StageState.RUNNING, tenant="acme", kind=kind)])
    after = apply(row, make_status(StageState.SUCCEEDED, at=1, stage=Stage.ANCHOR, kind=kind))
    assert after is not None and after.tenant == "acme"


def test_a_cancel_ends_the_run_wherever_it_is(make_status: MakeStatus, at: At) -> None:
    running = [
        make_status(StageState.QUEUED, at=0),
        make_status(StageState.SUCCEEDED, at=1, progress=100, result=VERIFIED),
        make_status(StageState.RETRYING, stage=Stage.PROVE, at=2, attempt=2),
    ]
    # the gateway names the stage it saw; the job has moved on since
    cancel = make_status(StageState.CANCELLED, at=3, final=True)
    row = fold([*running, cancel])
    assert (row.state, row.finished_at) == ("cancelled", at(3))
    late = make_status(StageState.SUCCEEDED, stage=Stage.PROVE, at=4, attempt=2, final=True)
    assert apply(row, late) is None


def test_a_cancel_of_an_earlier_run_leaves_a_later_one_alone(make_status: MakeStatus) -> None:
    row = fold([make_status(StageState.RUNNING, generation=2)])
    assert apply(row, make_status(StageState.CANCELLED, generation=1, final=True)) is None


def test_a_later_run_after_a_cancel_takes_the_job_over(make_status: MakeStatus) -> None:
    row = fold([make_status(StageState.QUEUED), make_status(StageState.CANCELLED, final=True)])
    after = apply(row, make_status(StageState.QUEUED, generation=1, note="retried"))
    assert after is not None and after.state == "queued" and after.generation == 1


def test_a_webhook_delivery_never_moves_a_job(make_status: MakeStatus) -> None:
    row = fold([make_status(StageState.SUCCEEDED, final=True, result=VERIFIED)])
    for state in (StageState.SUCCEEDED, StageState.RETRYING, StageState.DEAD, StageState.QUEUED):
        delivery = make_status(state, stage=Stage.NOTIFY, generation=1, note="webhook")
        assert check_status(delivery) == delivery  # any kind of job may be notified
        assert apply(row, delivery) is None
    assert apply(None, make_status(StageState.SUCCEEDED, stage=Stage.NOTIFY)) is None


def test_a_result_read_twice_is_parsed_once_and_each_reader_gets_its_own_copy() -> None:
    """check_status and the row's transition both read a status's result: a small one is
    parsed once; a large one each time (the memory held stays bounded)."""
    from anchorline_projector import apply as module

    small = json.dumps({"root": "0x" + "ab" * 32, "path": [{"hash": "0x01"}]})
    large = json.dumps({"blob": "x" * (module.MEMO_CHARS + 1)})
    module._remembered_result.cache_clear()
    first, second = module.result_of(small), module.result_of(small)
    assert first == second == json.loads(small) and first is not second
    first["root"] = "changed"
    assert module.result_of(small)["root"] == "0x" + "ab" * 32
    assert module._remembered_result.cache_info().hits == 2
    assert module.result_of(large) == json.loads(large)
    assert module._remembered_result.cache_info().currsize == 1  # the small one alone
    with pytest.raises(BadInput):
        module.result_of("[1, 2]")
