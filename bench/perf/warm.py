"""Warming a fresh broker before anything counts: a broker just started spends much of its CPU
compiling its own code (the JVM's JIT: in a 1 MiB scaling run with 10 s of warm-up, its C2
compiler threads were a third of Kafka's CPU), which a deployed one has done long before."""

from __future__ import annotations

import time
from typing import Any

from anchorline.events import JobKind
from perf import measure
from perf.measure import MIN_JOBS, run_workload
from perf.stack import Stack

WARMUP_TRICKLE_JOBS_S = 500.0


def warm_up(stack: Stack, signed: list[Any], *, seconds: float) -> dict[str, float]:
    """Verify jobs through Kafka for about `seconds`: half of it as fast as they go, half at a
    steady trickle, so the broker's JIT has compiled the paths of both before anything counts.
    Returns the rates seen (not figures of the system: its code was still being compiled)."""
    if seconds <= 0:
        return {}
    started = time.monotonic()
    bulk = run_workload(
        stack,
        "warm-up, full speed",
        measure.kafka_jobs(stack, signed, JobKind.VERIFY, max(MIN_JOBS, int(500 * seconds / 2))),
    )
    left = max(1.0, seconds - (time.monotonic() - started))
    trickle = run_workload(
        stack,
        "warm-up, trickle",
        measure.kafka_jobs(
            stack,
            signed,
            JobKind.VERIFY,
            int(WARMUP_TRICKLE_JOBS_S * left),
            rate=WARMUP_TRICKLE_JOBS_S,
        ),
    )
    return {"full_speed_jobs_s": bulk.e2e_jobs_s, "trickle_jobs_s": trickle.e2e_jobs_s}
