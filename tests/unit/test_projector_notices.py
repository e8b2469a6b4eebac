from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine

from anchorline.events import JobKind, JobRequested, Stage, StageState
from anchorline.stream import codec
from anchorline_projector.apply import JobRow
from anchorline_projector.notices import notice, notice_without_result
from anchorline_projector.store import SqlJobStore


def hooked_request(make_status: Any) -> JobRequested:
    """job-1's request, of tenant acme, naming its own webhook."""
    return JobRequested(
        "job-1",
        JobKind.PROOF,
        "sha256:" + "0" * 64,
        "{}",
        "0x",
        make_status().occurred_at,
        tenant="acme",
        callback_url="https://h.example/x",
    )


def test_a_row_reaching_a_final_state_is_handed_on_once_a_run(
    engine: Engine, make_status: Any
) -> None:
    store = SqlJobStore(engine)
    ended: list[JobRow] = []
    store.apply_batch(
        [make_status(StageState.QUEUED), make_status(StageState.RUNNING)], ended=ended
    )
    assert ended == []
    last = make_status(StageState.SUCCEEDED, stage=Stage.PROVE, final=True, at=2)
    store.apply_batch([last, make_status(StageState.DEAD, stage=Stage.PROVE, at=3)], ended=ended)
    assert [row.state for row in ended] == ["succeeded"]
    store.apply_batch([make_status(StageState.FAILED, generation=1, at=4)], ended=ended)
    assert [(row.state, row.generation) for row in ended] == [("succeeded", 0), ("failed", 1)]


def test_a_notice_goes_only_where_a_hook_is(engine: Engine, make_status: Any) -> None:
    store = SqlJobStore(engine)
    request = hooked_request(make_status)
    store.keep_requests(
        [(b"job-1", codec.encode(request)), (b"bad id!", b"x"), (b"job-2", b"junk")]
    )
    assert store.callbacks(["job-1", "job-2"]) == {"job-1": "https://h.example/x"}
    ended: list[JobRow] = []
    store.apply_batch([make_status(StageState.FAILED, tenant="acme", error="no")], ended=ended)
    (row,) = ended
    event = notice(row, callbacks=store.callbacks(["job-1"]), defaults={})
    assert event is not None
    assert (event.callback_url, event.state, event.tenant) == (
        "https://h.example/x",
        StageState.FAILED,
        "acme",
    )
    record = json.loads(event.record)
    assert (record["job_id"], record["state"], record["error"]) == ("job-1", "failed", "no")
    assert notice(row, callbacks={}, defaults={}) is None
    assert notice(row, callbacks={}, defaults={"acme": "https://a.example"}) is not None
    assert notice(row, callbacks={}, defaults={"bolt": "https://b.example"}) is None
    slim = json.loads(notice_without_result(event).record)
    assert "omitted" in slim["result"] and slim["state"] == "failed"


def test_a_batch_keeps_its_requests_and_finds_the_callbacks_of_the_jobs_it_ended(
    engine: Engine, make_status: Any
) -> None:
    store = SqlJobStore(engine)
    request = hooked_request(make_status)
    ended: list[JobRow] = []
    callbacks: dict[str, str] = {}
    changed = store.apply_batch(
        [make_status(StageState.QUEUED), make_status(StageState.FAILED, error="no", at=2)],
        requests=[(b"job-1", codec.encode(request))],
        ended=ended,
        callbacks=callbacks,
    )
    assert changed == 1
    assert [row.state for row in ended] == ["failed"]
    assert callbacks == {"job-1": "https://h.example/x"}
    assert store.callbacks(["job-1"]) == callbacks, "the request was kept with the statuses"
    assert store.apply_batch([], requests=[(b"job-2", codec.encode(request))]) == 0
    again: dict[str, str] = {}
    store.apply_batch([make_status(StageState.RUNNING, at=3)], callbacks=again)
    assert again == {}, "only the jobs a batch ended are looked up"
