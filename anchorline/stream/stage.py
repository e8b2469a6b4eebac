"""What a stage is: a handler that turns input events into output events, with no Kafka in it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from anchorline.events import Event, JobRef, Stage

Report = Callable[[JobRef, int], None]
"""Report a job's progress (percent of the stage) while the handler works."""


class StageHandler(Protocol):
    """One stage's logic. `handle` returns status events and the next stage's requests.

    It raises Retryable for transient failures and Permanent for bad input; the runner
    maps those to retries, `failed` jobs and dead letters. `batched` handlers get every
    message of a batch window at once; the others get one message at a time.
    """

    stage: Stage
    consumes: type[Any]
    batched: bool

    def handle(self, events: Sequence[Any], report: Report) -> Sequence[Event]: ...


@runtime_checkable
class Prefetching(Protocol):
    """A handler that can fetch at once what a whole poll batch will need (one request to a
    node instead of one a job). Only an optimisation: `handle` gives the same results without
    it, and `prefetch` never raises."""

    def prefetch(self, events: Sequence[Any]) -> None: ...


@runtime_checkable
class Closing(Protocol):
    """A handler holding something to let go of (a connection to a node) when its runner ends."""

    def close(self) -> None: ...
