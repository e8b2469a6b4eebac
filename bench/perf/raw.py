"""The raw limit: the verify and prove handlers, built by their services' composition roots,
called in a loop in this one process with the registry lookup on (the handler's own work), and
without Kafka or a database."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import cycle, islice
from typing import Any

from anchorline.events import JobKind, JobRef, ProveRequested
from anchorline.infra.anvil import DEV_PRIVATE_KEYS
from anchorline.settings import Settings
from anchorline_prover.main import build_handler as prove_handler
from anchorline_verifier.main import build_handler as verify_handler
from perf.jobs import Signed


def _ignore(ref: JobRef, percent: int) -> None:
    return None


def _verify(handler: Any, batch: Sequence[Any]) -> Any:
    """As the runner calls it: the batch's lookups prefetched, then the handler."""
    handler.prefetch(batch)
    return handler.handle(batch, _ignore)


def _rate(
    handle: Callable[[Sequence[Any]], Any], events: list[Any], batch: int
) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(events), batch):
        handle(events[start : start + batch])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"jobs_s": len(events) / wall, "cpu_ms_per_job": 1000 * cpu / len(events)}


def raw_limits(
    settings: Settings, registry: str, signed: list[Signed], *, seconds: float
) -> dict[str, dict[str, float]]:
    """Jobs per second (and CPU ms per job) of verify, prove, and the two in series; the
    handlers get batches as the runner hands them over (a poll batch, a batch window)."""
    settings = replace(
        settings,
        registry_address=registry,
        prover_private_key=settings.prover_private_key or DEV_PRIVATE_KEYS[1],
    )
    verify, prove = verify_handler(settings), prove_handler(settings)
    probe = [s.event(JobKind.PROOF) for s in islice(cycle(signed), 40)]
    guess = _rate(lambda b: _verify(verify, b), probe, settings.poll_batch)["jobs_s"]
    requests = [
        s.event(JobKind.PROOF) for s in islice(cycle(signed), max(50, int(seconds * guess)))
    ]
    outputs: list[Any] = []
    verified = _rate(lambda b: outputs.extend(_verify(verify, b)), requests, settings.poll_batch)
    proves = [event for event in outputs if isinstance(event, ProveRequested)]
    proved = _rate(lambda b: prove.handle(b, _ignore), proves, settings.batch_max_jobs)
    return {
        "verify": verified,
        "prove": proved,
        "proof": {
            "jobs_s": 1 / (1 / verified["jobs_s"] + 1 / proved["jobs_s"]),
            "cpu_ms_per_job": verified["cpu_ms_per_job"] + proved["cpu_ms_per_job"],
        },
    }
