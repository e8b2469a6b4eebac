"""The operators' dead-letter desk: browse the dead-letter topics, replay after a dry run.

The same reading and replaying as `anchorline dlq` (anchorline/stream/dlq.py), over HTTP for
the console. Admin keys only (auth.OPERATOR_PREFIXES).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from confluent_kafka import KafkaException
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from anchorline.errors import IncompleteRead
from anchorline.events import Stage
from anchorline.settings import Settings
from anchorline.stream import dlq
from anchorline_gateway.limits import read_json
from anchorline_gateway.problems import BadRequest, problem

CACHE_S = 2.0
MAX_LETTERS = 1000
MAX_REPLAY = 1000
REPLAY_RATE = 50.0
FILTERS = ("stage", "job", "error", "since", "until")


class DeadLetterDesk(Protocol):
    def letters(self, wanted: Wanted) -> list[dlq.DeadLetter]: ...

    def replayed(self) -> set[str]: ...

    def replay(self, letters: list[dlq.DeadLetter]) -> int: ...


@dataclass(frozen=True)
class Wanted:
    """Which letters: a stage, the letter filter of `dlq`, or exact coordinates."""

    stage: str | None
    filter: dlq.LetterFilter
    coordinates: frozenset[str] | None = None

    def matches(self, letter: dlq.DeadLetter) -> bool:
        if self.coordinates is not None and letter.coordinates not in self.coordinates:
            return False
        return self.filter.matches(letter)


class KafkaDeadLetters:
    """Reads every dead-letter topic to its end as it stands, at most once each CACHE_S (a
    console refreshing, or many filters in a row, read the topics once); replays in
    transactions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._read: tuple[float, list[dlq.DeadLetter], set[str]] | None = None

    def _current(self) -> tuple[list[dlq.DeadLetter], set[str]]:
        with self._lock:
            if self._read is None or time.monotonic() - self._read[0] >= CACHE_S:
                letters = list(dlq.read_letters(self.settings))
                self._read = (time.monotonic(), letters, dlq.replayed(self.settings))
            return self._read[1], self._read[2]

    def letters(self, wanted: Wanted) -> list[dlq.DeadLetter]:
        every, _ = self._current()
        return [one for one in every if wanted.stage in (None, one.stage) and wanted.matches(one)]

    def replayed(self) -> set[str]:
        return self._current()[1]

    def replay(self, letters: list[dlq.DeadLetter]) -> int:
        count = dlq.Replayer(self.settings, rate=REPLAY_RATE).replay(letters, lambda _: None)
        with self._lock:
            self._read = None
        return count


def wanted_of(values: dict[str, Any], *, coordinates: Any = None) -> Wanted:
    """The filters of a query string or a JSON body, checked."""
    stage = values.get("stage") or None
    if stage is not None and stage not in (*(str(s) for s in Stage), dlq.STATUS):
        raise BadRequest("stage must be one of verify, prove, anchor, status")
    texts = {name: values.get(name) for name in ("job", "error")}
    for name, text in texts.items():
        if text is not None and (not isinstance(text, str) or len(text) > 256):
            raise BadRequest(f"{name} must be text of at most 256 characters")
    chosen = None
    if coordinates is not None:
        if not isinstance(coordinates, list) or len(coordinates) > MAX_REPLAY:
            raise BadRequest(f"coordinates must be a list of at most {MAX_REPLAY}")
        if not all(isinstance(one, str) and len(one) <= 512 for one in coordinates):
            raise BadRequest("each coordinate is TOPIC:PARTITION:OFFSET")
        chosen = frozenset(coordinates)
    return Wanted(
        stage=stage,
        filter=dlq.LetterFilter(
            texts["job"] or None,
            texts["error"] or None,
            moment(values.get("since"), "since"),
            moment(values.get("until"), "until"),
        ),
        coordinates=chosen,
    )


def moment(value: Any, name: str) -> datetime | None:
    """An ISO 8601 time from a query or body (UTC unless it names its zone), or BadRequest."""
    if value in (None, ""):
        return None
    if len(str(value)) > 64:
        raise BadRequest(f"{name} must be an ISO 8601 time")
    try:
        found = datetime.fromisoformat(str(value))
        return found.astimezone(UTC) if found.tzinfo else found.replace(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:  # OverflowError: year 1 moved to UTC
        raise BadRequest(f"{name} must be an ISO 8601 time") from exc


def described(letter: dlq.DeadLetter, *, replayed: set[str]) -> dict[str, Any]:
    return {**letter.summary(), "replayed": letter.coordinates in replayed}


def detailed(letter: dlq.DeadLetter, *, replayed: set[str]) -> dict[str, Any]:
    """A letter with its headers and its message decoded (or the first bytes, in hex)."""
    event = letter.event()
    message = event.__dict__ if event is not None else {"undecodable": letter.value[:256].hex()}
    return {
        **described(letter, replayed=replayed),
        "headers": {
            name: value.decode("utf-8", "replace") for name, value in letter.headers.items()
        },
        "message": {name: _plain(value) for name, value in message.items()},
    }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _desk(request: Request) -> DeadLetterDesk | None:
    desk: DeadLetterDesk | None = request.app.state.gateway.dead_letters
    return desk


async def list_letters(request: Request) -> Response:
    desk = _desk(request)
    if desk is None:
        return problem(404, "no dead-letter desk configured")
    wanted = wanted_of(dict(request.query_params))
    try:
        letters, done = await run_in_threadpool(lambda: (desk.letters(wanted), desk.replayed()))
    except (KafkaException, IncompleteRead) as exc:
        return problem(503, f"Kafka: {exc}", **{"Retry-After": "5"})
    shown = letters[-MAX_LETTERS:]
    return JSONResponse(
        {"letters": [described(one, replayed=done) for one in shown], "total": len(letters)}
    )


async def show_letter(request: Request) -> Response:
    desk = _desk(request)
    if desk is None:
        return problem(404, "no dead-letter desk configured")
    coordinates = request.path_params["coordinates"]
    wanted = Wanted(stage=None, filter=dlq.LetterFilter(), coordinates=frozenset({coordinates}))
    try:
        found, done = await run_in_threadpool(lambda: (desk.letters(wanted), desk.replayed()))
    except (KafkaException, IncompleteRead) as exc:
        return problem(503, f"Kafka: {exc}", **{"Retry-After": "5"})
    if not found:
        return problem(404, f"no dead letter at {coordinates}")
    return JSONResponse(detailed(found[0], replayed=done))


async def replay_letters(request: Request) -> Response:
    """Replay the letters a filter or a list of coordinates names: a dry run unless
    `"dry_run": false`; letters replayed before are skipped (replaying twice does nothing)."""
    desk = _desk(request)
    if desk is None:
        return problem(404, "no dead-letter desk configured")
    body = await read_json(request, max_bytes=256 * 1024)
    if not isinstance(body, dict) or set(body) - {*FILTERS, "coordinates", "dry_run"}:
        raise BadRequest(f"send a JSON object of {', '.join(FILTERS)}, coordinates, dry_run")
    dry_run = body.get("dry_run", True)
    if not isinstance(dry_run, bool):
        raise BadRequest("dry_run must be true or false")
    wanted = wanted_of(body, coordinates=body.get("coordinates"))
    try:
        letters, done = await run_in_threadpool(lambda: (desk.letters(wanted), desk.replayed()))
        fresh = [letter for letter in letters if letter.coordinates not in done][:MAX_REPLAY]
        count = 0 if dry_run else await run_in_threadpool(desk.replay, fresh)
    except (KafkaException, IncompleteRead) as exc:
        return problem(503, f"Kafka: {exc}", **{"Retry-After": "5"})
    return JSONResponse(
        {
            "dry_run": dry_run,
            "replayed": count,
            "letters": [one.coordinates for one in fresh],
            "undecodable": [one.coordinates for one in fresh if one.event() is None],
            "replayed_before": [one.coordinates for one in letters if one.coordinates in done],
        }
    )
