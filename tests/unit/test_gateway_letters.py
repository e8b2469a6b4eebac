"""The dead-letter desk's routes: operators only, filters checked, a dry run unless told."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from starlette.testclient import TestClient

from anchorline.store.blobstore import FileBlobStore
from anchorline.stream.dlq import DeadLetter
from anchorline_gateway.app import Gateway, create_app
from anchorline_gateway.letters import Wanted
from anchorline_gateway.publisher import MemoryPublisher
from anchorline_gateway.reads import SqlJobReader

ADMIN = {"Authorization": "Bearer op"}


class MemoryDesk:
    def __init__(self, *letters: DeadLetter) -> None:
        self.kept = list(letters)
        self.done: set[str] = set()

    def letters(self, wanted: Wanted) -> list[DeadLetter]:
        return [
            one for one in self.kept if wanted.stage in (None, one.stage) and wanted.matches(one)
        ]

    def replayed(self) -> set[str]:
        return set(self.done)

    def replay(self, letters: list[DeadLetter]) -> int:
        self.done |= {letter.coordinates for letter in letters}
        return len(letters)


def letter(offset: int, stage: str = "verify") -> DeadLetter:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    headers = {"kafka_dlt-exception-message": b"boom"}
    return DeadLetter(stage, f"t.{stage}.dlq", 0, offset, b"job", b"junk", headers, when)


def gateway(tmp_path: Path, engine: Engine, desk: MemoryDesk | None) -> Gateway:
    plain = Gateway(
        FileBlobStore(tmp_path), MemoryPublisher(), SqlJobReader(engine), {"k": "acme"}, {"op"}
    )
    return dataclasses.replace(plain, dead_letters=desk)


def test_only_operators_reach_the_desk(tmp_path: Path, engine: Engine) -> None:
    with TestClient(create_app(gateway(tmp_path, engine, MemoryDesk(letter(1))))) as client:
        tenant = {"Authorization": "Bearer k"}
        assert client.get("/v1/dead-letters", headers=tenant).status_code == 403
        assert client.get("/v1/dead-letters/t.verify.dlq:0:1", headers=tenant).status_code == 403
        replay = client.post("/v1/dead-letters/replay", json={}, headers=tenant)
        assert replay.status_code == 403
        assert client.get("/v1/dead-letters").status_code == 401
        assert client.get("/v1/dead-letters", headers=ADMIN).json()["total"] == 1


def test_a_replay_is_a_dry_run_until_told_and_never_twice(tmp_path: Path, engine: Engine) -> None:
    desk = MemoryDesk(letter(1), letter(2), letter(3, "prove"))
    with TestClient(create_app(gateway(tmp_path, engine, desk))) as client:
        dry = client.post("/v1/dead-letters/replay", json={"stage": "verify"}, headers=ADMIN)
        assert dry.json()["letters"] == ["t.verify.dlq:0:1", "t.verify.dlq:0:2"]
        assert dry.json()["undecodable"] == dry.json()["letters"]  # b"junk" decodes to nothing
        assert desk.done == set()
        one = {"coordinates": ["t.verify.dlq:0:2"], "dry_run": False}
        assert (
            client.post("/v1/dead-letters/replay", json=one, headers=ADMIN).json()["replayed"] == 1
        )
        again = client.post("/v1/dead-letters/replay", json=one, headers=ADMIN).json()
        assert again["replayed"] == 0 and again["replayed_before"] == ["t.verify.dlq:0:2"]
        listed = client.get("/v1/dead-letters?stage=verify", headers=ADMIN).json()["letters"]
        assert [row["replayed"] for row in listed] == [False, True]
        shown = client.get("/v1/dead-letters/t.verify.dlq:0:2", headers=ADMIN).json()
        assert shown["headers"]["kafka_dlt-exception-message"] == "boom"
        assert shown["message"] == {"undecodable": b"junk".hex()}


def test_bad_filters_and_bodies_are_400s_and_no_desk_is_a_404(
    tmp_path: Path, engine: Engine
) -> None:
    with TestClient(create_app(gateway(tmp_path, engine, MemoryDesk()))) as client:
        for query in ("stage=nope", "since=yesterday", "job=" + "x" * 300):
            assert client.get(f"/v1/dead-letters?{query}", headers=ADMIN).status_code == 400, query
        for body in ([], {"dry_run": "no"}, {"coordinates": "a"}, {"other": 1}):
            answer = client.post("/v1/dead-letters/replay", json=body, headers=ADMIN)
            assert answer.status_code == 400, body
        assert client.get("/v1/dead-letters/t:0:9", headers=ADMIN).status_code == 404
    with TestClient(create_app(gateway(tmp_path, engine, None))) as client:
        assert client.get("/v1/dead-letters", headers=ADMIN).status_code == 404
