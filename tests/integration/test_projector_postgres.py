"""The projector from the real status topic into the real PostgreSQL jobs table."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, TopicPartition
from kafka_helpers import publish, read_topic, wait_for

from anchorline.cli.main import main
from anchorline.events import JobKind, JobRef, JobRequested, Stage, StageState, new_id, utcnow
from anchorline.infra.postgres import PostgresServer
from anchorline.settings import Settings
from anchorline.store.db import job_events, jobs, make_engine
from anchorline.store.migrate import upgrade
from anchorline.stream import codec, headers
from anchorline.stream.kafka import client_config
from anchorline_gateway.reads import SqlJobReader
from anchorline_projector.service import Projector
from anchorline_projector.store import SqlJobStore


@pytest.fixture
def engine(postgres: PostgresServer) -> Iterator[sa.Engine]:
    schema = f"s{uuid.uuid4().hex[:10]}"
    admin = make_engine(postgres.url)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    engine = sa.create_engine(postgres.url, connect_args={"options": f"-csearch_path={schema}"})
    upgrade(engine)
    yield engine
    engine.dispose()


def test_projector_applies_topic_in_order_and_ignores_stale(
    settings: Settings, engine: sa.Engine, running
) -> None:
    ref = JobRef(new_id(), JobKind.PROOF, submitted_at=utcnow())
    now = utcnow()
    queued = ref.status(Stage.VERIFY, StageState.QUEUED, occurred_at=now)
    verified = ref.status(
        Stage.VERIFY,
        StageState.SUCCEEDED,
        result='{"status": "OK"}',
        occurred_at=now + timedelta(seconds=1),
    )
    late_running = ref.status(Stage.VERIFY, StageState.RUNNING, occurred_at=now)
    proved = ref.status(
        Stage.PROVE,
        StageState.SUCCEEDED,
        result='{"root": "0xab"}',
        occurred_at=now + timedelta(seconds=2),
    )
    publish(settings, queued, verified, late_running, proved, proved)
    running(Projector(settings, SqlJobStore(engine)).run)

    def finished():  # type: ignore[no-untyped-def]
        with engine.connect() as connection:
            return connection.execute(
                sa.select(jobs).where(jobs.c.job_id == ref.job_id, jobs.c.state == "succeeded")
            ).first()

    row = wait_for(finished)
    assert row.stage == "prove"
    assert row.result == {"verify": {"status": "OK"}, "prove": {"root": "0xab"}}
    assert row.finished_at is not None
    with engine.connect() as connection:
        history = connection.execute(
            sa.select(job_events.c.state, job_events.c.applied)
            .where(job_events.c.job_id == ref.job_id)
            .order_by(job_events.c.id)
        ).all()
    assert [tuple(entry) for entry in history] == [
        ("queued", True),
        ("succeeded", True),
        ("running", False),
        ("succeeded", True),
    ]


def test_store_is_idempotent_on_postgres(engine: sa.Engine) -> None:
    store = SqlJobStore(engine)
    ref = JobRef(new_id(), JobKind.VERIFY, submitted_at=utcnow())
    done = ref.status(Stage.VERIFY, StageState.SUCCEEDED, result='{"status": "OK"}')

    assert store.apply_batch([done]) == 1
    assert store.apply_batch([done]) == 0
    with engine.connect() as connection:
        count = connection.execute(
            sa.select(sa.func.count())
            .select_from(job_events)
            .where(job_events.c.job_id == ref.job_id)
        ).scalar_one()
    assert count == 1


def test_rebuild_from_the_topic_equals_the_live_table(
    settings: Settings, engine: sa.Engine, postgres: PostgresServer, running, monkeypatch
) -> None:
    now = utcnow()
    events = []
    for index in range(40):
        ref = JobRef(new_id(), JobKind.ANCHOR, submitted_at=now)
        steps = [
            (Stage.VERIFY, StageState.QUEUED, None),
            (Stage.VERIFY, StageState.RUNNING, None),
            (Stage.VERIFY, StageState.SUCCEEDED, '{"status": "OK"}'),
            (Stage.PROVE, StageState.RETRYING, None),
            (Stage.PROVE, StageState.SUCCEEDED, '{"root": "0x01"}'),
            (Stage.ANCHOR, StageState.FAILED if index % 5 == 0 else StageState.SUCCEEDED, None),
        ]
        made = [
            ref.status(stage, state, result=result, occurred_at=now + timedelta(seconds=second))
            for second, (stage, state, result) in enumerate(steps)
        ]
        events += [*made, made[1], made[0]]  # a duplicate and a late event per job
    publish(settings, *events)
    running(Projector(settings, SqlJobStore(engine)).run)

    def all_terminal():  # type: ignore[no-untyped-def]
        with engine.connect() as connection:
            return (
                connection.execute(
                    sa.select(sa.func.count())
                    .select_from(jobs)
                    .where(jobs.c.state.in_(["succeeded", "failed"]))
                ).scalar_one()
                == 40
            )

    wait_for(all_terminal)
    rebuilt_url = postgres.new_database("rebuilt")
    for name, value in {**settings.as_env(), "ANCHORLINE_DATABASE_URL": rebuilt_url}.items():
        monkeypatch.setenv(name, value)

    assert main(["projector", "rebuild"]) == 0

    rebuilt = make_engine(rebuilt_url)
    try:
        assert table_rows(rebuilt) == table_rows(engine)
        assert len(table_rows(rebuilt)[0]) == 40
    finally:
        rebuilt.dispose()


def table_rows(engine: sa.Engine) -> tuple[list[tuple], list[tuple]]:  # type: ignore[type-arg]
    history = [c for c in job_events.c if c.name != "id"]
    with engine.connect() as connection:
        rows = connection.execute(sa.select(jobs).order_by(jobs.c.job_id)).all()
        events = connection.execute(
            sa.select(*history).order_by(job_events.c.job_id, job_events.c.id)
        ).all()
    return [tuple(row) for row in rows], [tuple(row) for row in events]


def test_a_deep_result_is_dead_lettered_and_the_projector_carries_on(
    settings: Settings, engine: sa.Engine, running
) -> None:
    hostile = JobRef(new_id(), JobKind.VERIFY, submitted_at=utcnow())
    fine = JobRef(new_id(), JobKind.VERIFY, submitted_at=utcnow())
    deep = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    publish(
        settings,
        hostile.status(Stage.VERIFY, StageState.SUCCEEDED, result=deep),
        fine.status(Stage.VERIFY, StageState.SUCCEEDED, result='{"status": "OK"}'),
    )
    running(Projector(settings, SqlJobStore(engine)).run)

    letters = read_topic(
        settings, settings.topics.dead_letter(settings.topics.job_status), until=lambda m: bool(m)
    )
    reason = dict(letters[0].headers())[headers.EXCEPTION_MESSAGE]
    assert b"result nests deeper than 32 levels" in reason
    wait_for(lambda: state_of(engine, fine.job_id) == "succeeded")
    assert state_of(engine, hostile.job_id) is None


def state_of(engine: sa.Engine, job_id: str) -> str | None:
    with engine.connect() as connection:
        state: str | None = connection.execute(
            sa.select(jobs.c.state).where(jobs.c.job_id == job_id)
        ).scalar()
    return state


def test_forged_statuses_are_dead_lettered_and_leave_the_job_alone(
    settings: Settings, engine: sa.Engine, running
) -> None:
    victim = JobRef(new_id(), JobKind.VERIFY, submitted_at=utcnow(), tenant="acme")
    done = victim.status(Stage.VERIFY, StageState.SUCCEEDED, result='{"status": "OK"}')
    publish(settings, done)
    running(Projector(settings, SqlJobStore(engine)).run)
    wait_for(lambda: state_of(engine, victim.job_id) == "succeeded")

    phantom = JobRef(new_id(), JobKind.VERIFY, submitted_at=utcnow())
    publish(
        settings,
        replace(victim, tenant="mallory", generation=7).status(
            Stage.VERIFY, StageState.FAILED, error="forged"
        ),
        replace(phantom, generation=-1).status(Stage.VERIFY, StageState.QUEUED),
    )
    letters = read_topic(
        settings,
        settings.topics.dead_letter(settings.topics.job_status),
        until=lambda m: len(m) >= 2,
    )
    reasons = sorted(dict(m.headers())[headers.EXCEPTION_MESSAGE] for m in letters)
    assert b"a status naming another tenant" in reasons[0]
    assert b"generation must be from 0 to 1000000, not -1" in reasons[1]
    assert state_of(engine, victim.job_id) == "succeeded"
    assert state_of(engine, phantom.job_id) is None


def test_statuses_postgres_cannot_store_are_dead_lettered_and_the_rest_applied(
    settings: Settings, engine: sa.Engine, running
) -> None:
    """PostgreSQL's text columns refuse NUL: a reason quoting hostile input still ends its job
    (the NUL written out), and a status whose other text carries one is dead-lettered alone."""
    in_error, in_hash = (JobRef(new_id(), JobKind.VERIFY, submitted_at=utcnow()) for _ in "ab")
    fine = JobRef(new_id(), JobKind.VERIFY, submitted_at=utcnow())
    publish(
        settings,
        in_error.status(Stage.VERIFY, StageState.FAILED, error="bad\x00byte"),
        replace(in_hash, content_sha256="ab\x00cd").status(Stage.VERIFY, StageState.QUEUED),
        fine.status(Stage.VERIFY, StageState.SUCCEEDED, result='{"status": "OK"}'),
    )
    running(Projector(settings, SqlJobStore(engine)).run)

    letters = read_topic(
        settings, settings.topics.dead_letter(settings.topics.job_status), until=lambda m: bool(m)
    )
    reason = dict(letters[0].headers())[headers.EXCEPTION_MESSAGE]
    assert b"0x00" in reason  # PostgreSQL: invalid byte sequence for encoding "UTF8": 0x00
    wait_for(lambda: state_of(engine, fine.job_id) == "succeeded")
    wait_for(lambda: state_of(engine, in_error.job_id) == "failed")
    with engine.connect() as connection:
        error = connection.execute(
            sa.select(jobs.c.error).where(jobs.c.job_id == in_error.job_id)
        ).scalar()
    assert error == "bad\\x00byte"
    assert state_of(engine, in_hash.job_id) is None


def test_a_stopped_projector_has_committed_every_applied_status(
    settings: Settings, engine: sa.Engine
) -> None:
    """Commits do not wait for the broker while it runs; stopping does, for all applied."""
    refs = [JobRef(new_id(), JobKind.VERIFY, submitted_at=utcnow()) for _ in range(30)]
    publish(settings, *[ref.status(Stage.VERIFY, StageState.SUCCEEDED) for ref in refs])
    stop = threading.Event()
    projector = threading.Thread(target=Projector(settings, SqlJobStore(engine)).run, args=(stop,))
    projector.start()

    def all_applied() -> bool:
        with engine.connect() as connection:
            count = connection.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one()
        return bool(count == len(refs))

    try:
        wait_for(all_applied)
    finally:
        stop.set()
        projector.join(30)
    consumer = Consumer(client_config(settings) | {"group.id": "anchorline-projector"})
    try:
        partitions = [
            TopicPartition(settings.topics.job_status, p) for p in range(settings.partitions)
        ]
        committed = consumer.committed(partitions, timeout=30)
        ends = [consumer.get_watermark_offsets(p, timeout=30)[1] for p in partitions]
    finally:
        consumer.close()
    assert [p.offset if p.offset >= 0 else 0 for p in committed] == ends
    assert sum(ends) == len(refs)


def test_a_batch_of_rows_arrays_and_results_round_trip_on_postgres(engine: sa.Engine) -> None:
    """The batch statements (a column an array) keep every value as the row had it: results
    orjson cannot write (an integer past 64 bits) included, and a job's later status updates
    the row its earlier one inserted."""
    store = SqlJobStore(engine)
    refs = [JobRef(new_id(), JobKind.VERIFY, submitted_at=utcnow(), tenant="t") for _ in range(5)]
    results = [
        '{"big": 1180591620717411303424, "text": "\u00e9\u4e2d", "nested": {"a": [1, null]}}',
        '{"status": "OK"}',
    ]
    store.apply_batch([ref.status(Stage.VERIFY, StageState.QUEUED) for ref in refs])
    ended: list = []
    changed = store.apply_batch(
        [
            ref.status(Stage.VERIFY, StageState.SUCCEEDED, result=results[i % 2])
            for i, ref in enumerate(refs)
        ],
        ended=ended,
    )
    assert changed == 5 and {row.job_id for row in ended} == {ref.job_id for ref in refs}
    for i, ref in enumerate(refs):
        job = SqlJobReader(engine).get(ref.job_id)
        assert job is not None and job["state"] == "succeeded" and job["tenant"] == "t"
        assert job["result"] == {"verify": json.loads(results[i % 2])}
    assert len(SqlJobReader(engine).history(refs[0].job_id)) == 2


def test_statements_run_again_and_again_are_planned_for_their_own_values(
    postgres: PostgresServer,
) -> None:
    """psycopg prepares a statement run five times; PostgreSQL would then keep a generic plan
    made while the table was empty (a sequential scan, kept as the table grew). make_engine's
    connections plan every execution for its values."""
    engine = make_engine(postgres.url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TEMP TABLE looked_up (id text PRIMARY KEY)")
            for _ in range(20):  # prepared after 5; a generic plan would be tried from the 11th
                connection.exec_driver_sql(
                    "SELECT id FROM looked_up WHERE id = any(%(ids)s::text[])",
                    {"ids": [str(n) for n in range(200)]},  # a batch's ids
                )
            plans = connection.exec_driver_sql(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE '%%looked_up WHERE%%'"
            ).one()
    finally:
        engine.dispose()
    assert (plans[0], plans[1]) == (0, 15)


def test_a_batchs_lookup_by_key_reads_the_index_not_the_table(postgres: PostgresServer) -> None:
    """The projector asks which of a batch's 500 event ids the history already has. With
    PostgreSQL's default random_page_cost a sequential scan of the whole history looked cheaper
    than 500 lookups in its key (measured: the projector read job_events whole each batch);
    make_engine's connections cost a read as of memory, and look the ids up in the index."""
    lookup = (
        "EXPLAIN SELECT event_id FROM known WHERE event_id = any(%(ids)s::text[])",
        {"ids": [f"e{n * 97}" for n in range(500)]},
    )

    def plan(engine: sa.Engine) -> str:
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(
                    "CREATE TEMP TABLE known (event_id text PRIMARY KEY, job_id text, note text)"
                )
                connection.exec_driver_sql(
                    "INSERT INTO known SELECT 'e' || n, 'j' || n, repeat('x', 100)"
                    " FROM generate_series(1, 60000) AS n"
                )
                connection.exec_driver_sql("ANALYZE known")
                return "\n".join(row[0] for row in connection.exec_driver_sql(*lookup))
        finally:
            engine.dispose()

    assert "Seq Scan" in plan(sa.create_engine(postgres.url))  # PostgreSQL's defaults
    anchorline = plan(make_engine(postgres.url))
    assert "Index" in anchorline and "Seq Scan" not in anchorline, anchorline


def test_a_request_postgres_cannot_keep_leaves_the_others_of_its_batch_kept(
    settings: Settings, engine: sa.Engine, running
) -> None:
    """Requests are kept for the API's retry: one the table refuses (a NUL in its callback URL)
    is not kept, and the rest of its batch still is."""
    fine, hostile = (
        JobRequested(new_id(), JobKind.VERIFY, "sha256:" + "ab" * 32, "{}", "0x", utcnow())
        for _ in "ab"
    )
    publish(settings, replace(hostile, callback_url="https://a\x00b/"), fine)
    running(Projector(settings, SqlJobStore(engine)).run)

    wait_for(lambda: SqlJobReader(engine).request_of(fine.job_id))
    assert SqlJobReader(engine).request_of(hostile.job_id) is None


def test_jobs_past_the_retention_are_pruned_on_postgres(engine: sa.Engine) -> None:
    store = SqlJobStore(engine)
    long_ago = utcnow() - timedelta(days=40)
    old = JobRef(new_id(), JobKind.VERIFY, submitted_at=long_ago)
    live = JobRef(new_id(), JobKind.VERIFY, submitted_at=long_ago)
    store.apply_batch(
        [
            old.status(Stage.VERIFY, StageState.SUCCEEDED, occurred_at=long_ago),
            live.status(Stage.VERIFY, StageState.RUNNING, occurred_at=long_ago),
        ]
    )
    assert store.prune(utcnow() - timedelta(days=30)) >= 1
    with engine.connect() as connection:
        left = set(
            connection.execute(
                sa.select(jobs.c.job_id).where(jobs.c.job_id.in_([old.job_id, live.job_id]))
            ).scalars()
        )
        history = connection.execute(
            sa.select(sa.func.count())
            .select_from(job_events)
            .where(job_events.c.job_id == old.job_id)
        ).scalar_one()
    assert left == {live.job_id}
    assert history == 0


def test_the_jobs_that_end_are_given_the_callback_urls_their_requests_named_on_postgres(
    engine: sa.Engine,
) -> None:
    """Kept in the batch's transaction, read back for the jobs it ended (one array statement):
    a job that named no URL, or did not end, gets none."""
    store = SqlJobStore(engine)
    requests = [
        JobRequested(
            new_id(), JobKind.VERIFY, "sha256:" + "ab" * 32, "{}", "0x", utcnow(), callback_url=url
        )
        for url in ("https://hooks.example/a", None, "https://hooks.example/c")
    ]
    kept = [(job.job_id.encode(), codec.encode(job)) for job in requests]
    ended: list = []
    callbacks: dict[str, str] = {}
    store.apply_batch(
        [
            JobRef(job.job_id, JobKind.VERIFY).status(Stage.VERIFY, state)
            for job, state in zip(
                requests, [StageState.SUCCEEDED, StageState.FAILED, StageState.RUNNING], strict=True
            )
        ],
        requests=kept,
        ended=ended,
        callbacks=callbacks,
    )
    assert {row.job_id for row in ended} == {requests[0].job_id, requests[1].job_id}
    assert callbacks == {requests[0].job_id: "https://hooks.example/a"}
    assert store.callbacks(job.job_id for job in requests) == {
        requests[0].job_id: "https://hooks.example/a",
        requests[2].job_id: "https://hooks.example/c",
    }
