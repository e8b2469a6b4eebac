from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from anchorline.events import JobKind, StageState
from anchorline.settings import Settings
from anchorline.store.blobstore import FileBlobStore
from anchorline_gateway.app import Gateway, create_app
from anchorline_gateway.pipeline import KafkaPipelineView
from anchorline_gateway.publisher import MemoryPublisher
from anchorline_gateway.reads import SqlJobReader
from anchorline_projector.store import SqlJobStore


@pytest.fixture
def client(tmp_path: Path, publisher: MemoryPublisher, engine: Engine) -> Iterator[TestClient]:
    gateway = Gateway(FileBlobStore(tmp_path / "blobs"), publisher, SqlJobReader(engine))
    with TestClient(create_app(gateway)) as client:
        yield client


def test_ready_when_database_and_kafka_answer(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_not_ready_without_kafka(client: TestClient, publisher: MemoryPublisher) -> None:
    publisher.down = True
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["problems"] == [
        "kafka: the broker does not answer for the requests topic"
    ]


def test_not_ready_without_the_jobs_table(client: TestClient, engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE jobs"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["problems"][0].startswith("jobs database")
    assert client.get("/healthz").status_code == 200, "alive, though not ready"


def test_metrics_count_jobs_by_kind_and_state(
    client: TestClient, engine: Engine, make_status: Any
) -> None:
    events = [
        make_status(StageState.SUCCEEDED, job_id="a", kind=JobKind.VERIFY, final=True),
        make_status(StageState.SUCCEEDED, job_id="b", kind=JobKind.VERIFY, final=True),
        make_status(StageState.RUNNING, job_id="c", kind=JobKind.ANCHOR),
    ]
    SqlJobStore(engine).apply_batch(events)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert 'anchorline_jobs{kind="verify",state="succeeded"} 2' in lines
    assert 'anchorline_jobs{kind="anchor",state="running"} 1' in lines
    assert "# TYPE anchorline_jobs gauge" in lines


class FixedView:
    def snapshot(self) -> dict[str, Any]:
        return {"stages": {"verify": {"lag": 3}}, "projector": {"lag": 0}}

    def close(self) -> None:
        pass


def test_the_dashboard_page_is_served_without_a_key(tmp_path: Path, engine: Engine) -> None:
    gateway = Gateway(
        FileBlobStore(tmp_path), MemoryPublisher(), SqlJobReader(engine), {"k": "acme"}
    )
    with TestClient(create_app(gateway)) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "/v1/pipeline" in page.text and "/v1/stats" in page.text
        assert '"cancel"' in page.text and '"retry"' in page.text  # a job page's actions
        assert client.get("/v1/pipeline").status_code == 401


def test_pipeline_view_is_served_when_configured(tmp_path: Path, engine: Engine) -> None:
    without = Gateway(FileBlobStore(tmp_path), MemoryPublisher(), SqlJobReader(engine))
    with TestClient(create_app(without)) as client:
        assert client.get("/v1/pipeline").status_code == 404
    with_view = dataclasses.replace(without, pipeline=FixedView())
    with TestClient(create_app(with_view)) as client:
        assert client.get("/v1/pipeline").json()["stages"]["verify"]["lag"] == 3


class LeaderNotYetElected:
    """A consumer whose partitions have no leader for the first few asks (just created)."""

    def __init__(self) -> None:
        self.refusals = 2

    def list_topics(self, topic: str, timeout: float) -> Any:
        partitions = {0: None}
        return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions=partitions)})

    def committed(self, partitions: list[Any], timeout: float) -> list[Any]:
        return [TopicPartition(p.topic, p.partition, 3) for p in partitions]

    def get_watermark_offsets(self, place: Any, timeout: float) -> tuple[int, int]:
        if self.refusals:
            self.refusals -= 1
            raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
        return 0, 10

    def close(self) -> None:
        pass


def test_the_pipeline_view_waits_for_a_partitions_leader_instead_of_failing() -> None:
    view = KafkaPipelineView(Settings(kafka_bootstrap="127.0.0.1:1"))
    view._consumer = lambda group: LeaderNotYetElected()  # type: ignore[assignment,method-assign,return-value]
    # counting the messages in the ranges: tests/integration/test_pipeline_view.py
    view._count = lambda ranges: ({p: end - start for p, (start, end) in ranges.items()}, True)  # type: ignore[method-assign]
    assert view._lag("anchorline-verifier", ["t.jobs.requested"])[0]["lag"] == 7
    assert view._depth("t.jobs.requested.dlq") == 10
