"""Warming a fresh broker before anything counts: a broker just started spends much of its CPU
compiling its own code (the JVM's JIT: in a 1 MiB scaling run with 10 s of warm-up, its C2
compiler threads were a third of Kafka's CPU), which a deployed one has done long before.

A fixed time is not enough on a slow machine: under 300 verify jobs a second on 2026-12-01's
VM, the broker's C2 thread used 36 to 40 % of a CPU for the first minute, 12 to 21 % in the
second, and under 5 % only from the third on (`settle`)."""

from __future__ import annotations

import time
from typing import Any

from anchorline.events import JobKind
from perf import measure
from perf.measure import MIN_JOBS, run_workload
from perf.stack import Stack

WARMUP_TRICKLE_JOBS_S = 500.0
SETTLED_JIT_SHARE = 0.05  # of a CPU: the broker's compiler threads, over a round of the load
SETTLE_ROUND_S = 10.0


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


def settle(stack: Stack, signed: list[Any], *, most_s: float) -> dict[str, float]:
    """More of the warm-up's load, in rounds of about SETTLE_ROUND_S (full speed, then a
    trickle), until the broker's JIT compiler threads used under SETTLED_JIT_SHARE of a CPU in
    a round, or `most_s` passed. Returns how long it took and the compiler's last share."""
    started = time.monotonic()
    share = 1.0
    rounds = 0
    while time.monotonic() - started < most_s:
        jit, at = stack.jit_cpu_seconds(), time.monotonic()
        warm_up(stack, signed, seconds=SETTLE_ROUND_S)
        share = (stack.jit_cpu_seconds() - jit) / (time.monotonic() - at)
        rounds += 1
        if share < SETTLED_JIT_SHARE:
            break
    return {
        "settle_s": round(time.monotonic() - started, 1),
        "settle_rounds": rounds,
        "jit_cpu_share": round(share, 3),
    }
