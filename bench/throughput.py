"""Throughput and latency of the whole system, as a ratio to the raw handler limit.

    .venv/bin/python bench/throughput.py [--quick] [--runs 3] [--seconds 10] [--content-kib 4]
                                         [--warmup-s 60] [--settle-s 240] [--json PATH]

Starts PostgreSQL (a new database) and the real stack as `anchorline up` runs it (Kafka,
anvil with the registry deployed, the five services as separate processes) on free ports in a
temporary state dir; then, in each run:

- raw limit: the verify and prove handlers in a loop in this process (no Kafka, no database);
- verify jobs produced straight to the request topic → terminal row in PostgreSQL;
- the same through `POST /v1/jobs/batch` (500 a request) and single `POST /v1/jobs`
  (32 clients): ingest rate (202s per second) and end to end;
- proof jobs and anchor jobs through Kafka, end to end;
- latency, submit → terminal row, of verify jobs produced at half the measured maximum rate;
- `POST /v1/jobs` with `Prefer: wait=5` at 10 jobs/s: time to the finished job;
- CPU ms per job of every process (services, Kafka, anvil, PostgreSQL, this client).

Before the first run, --warmup-s seconds (60) of verify jobs, half at full speed and half at a
steady trickle, warm the broker: a broker just started spends much of its CPU compiling its own
code (the JVM's JIT: up to half of Kafka's CPU a job in the first minute at a moderate rate), and
a deployed one is past that; then more of that load, in rounds of about 10 s, until the broker's
JIT compiler threads used under 5 % of a CPU in a round, for at most --settle-s seconds (240;
--quick 0). Each workload is sized to last about --seconds at the rate measured
before; every figure is the median over --runs runs. Prints one table and writes the figures as
JSON. Any ANCHORLINE_* variable in the environment reaches the stack (to try a tuning), except
ports and paths.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from perf import measure
from perf.jobs import signed_contents
from perf.measure import MIN_JOBS, Outcome, Terminal, run_workload
from perf.raw import raw_limits
from perf.report import print_table
from perf.stack import Stack, running_stack
from perf.warm import settle, warm_up

from anchorline.events import JobKind

PREFER_WAIT_RATE = 10.0


def one_run(
    stack: Stack, signed: list[Any], *, seconds: float, guess: dict[str, float]
) -> dict[str, Any]:
    """Every workload once; `guess` (jobs/s by workload, updated here) sizes each."""
    raw = raw_limits(stack.settings, stack.registry_address, signed, seconds=min(seconds, 5))
    guess.setdefault("verify", raw["verify"]["jobs_s"])
    guess.setdefault("proof", raw["proof"]["jobs_s"])

    def size(name: str, base: str) -> int:
        return max(MIN_JOBS, int(guess.get(name, guess[base]) * seconds))

    outcomes: list[Outcome] = []
    plan = [
        (
            "verify (Kafka)",
            "verify",
            lambda n: measure.kafka_jobs(stack, signed, JobKind.VERIFY, n),
        ),
        ("verify (HTTP batch)", "verify", lambda n: measure.http_batch(stack, signed, n)),
        (
            "verify (HTTP single, 32 clients)",
            "verify",
            lambda n: measure.http_single(stack, signed, n),
        ),
        ("proof (Kafka)", "proof", lambda n: measure.kafka_jobs(stack, signed, JobKind.PROOF, n)),
        ("anchor (Kafka)", "proof", lambda n: measure.kafka_jobs(stack, signed, JobKind.ANCHOR, n)),
    ]
    for name, base, submit in plan:
        outcome = run_workload(stack, name, submit(size(name, base)))
        guess[name] = max(outcome.e2e_jobs_s, 1.0)
        outcomes.append(outcome)
        print(f"  {name}: {outcome.e2e_jobs_s:,.0f} jobs/s end to end", flush=True)
    rate = max(1.0, outcomes[0].e2e_jobs_s / 2)
    latency = run_workload(
        stack,
        "verify latency at half max",
        measure.kafka_jobs(stack, signed, JobKind.VERIFY, max(20, int(rate * seconds)), rate=rate),
    )
    latency.ingest_jobs_s = rate
    outcomes.append(latency)
    print(f"  latency at {rate:,.0f} jobs/s: {latency.latency_ms}", flush=True)
    waited = measure.prefer_wait(stack, signed, rate=PREFER_WAIT_RATE, seconds=min(seconds, 5))
    Terminal(stack).wait(0)
    return {"raw": raw, "workloads": [asdict(o) for o in outcomes], "prefer_wait_ms": waited}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every number across runs, in the shape of one run."""
    first = runs[0]
    if isinstance(first, dict):
        return {key: median_of([run[key] for run in runs if key in run]) for key in first}
    if isinstance(first, list):
        return [median_of([run[i] for run in runs]) for i in range(len(first))]  # type: ignore[return-value]
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first  # type: ignore[no-any-return]
    return statistics.median(float(v) for v in runs if v is not None)  # type: ignore[return-value]


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_at_start": [round(x, 2) for x in load],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run of ~3 s workloads (~2 min)")
    parser.add_argument("--runs", type=int, help="runs to take the median of (default 3)")
    parser.add_argument("--seconds", type=float, help="target length of each workload (10)")
    parser.add_argument(
        "--content-kib", type=int, default=4, help="size of each job's content (4 KiB)"
    )
    parser.add_argument("--json", type=Path, help="where to write the figures")
    parser.add_argument(
        "--warmup-s", type=float, help="seconds of load before the first run (60; --quick 20)"
    )
    parser.add_argument(
        "--settle-s",
        type=float,
        help="at most this much more warm-up until the broker's JIT is quiet (240; --quick 0)",
    )
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    warmup_s = args.warmup_s if args.warmup_s is not None else (20.0 if args.quick else 60.0)
    settle_s = args.settle_s if args.settle_s is not None else (0.0 if args.quick else 240.0)
    env = {k: v for k, v in os.environ.items() if k.startswith("ANCHORLINE_")}
    figures: dict[str, Any] = {
        "machine": machine(),
        "runs": runs,
        "seconds": seconds,
        "content_kib": args.content_kib,
        "warmup_s": warmup_s,
        "settle_s": settle_s,
        "settings": env,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with tempfile.TemporaryDirectory(prefix="anchorline-bench-") as tmp:
        state = Path(tmp)
        print(f"starting the stack in {state} …", flush=True)
        with running_stack(state) as stack:
            signed = signed_contents(stack.settings.blobs, size=args.content_kib * 1024)
            print(f"warming up for {warmup_s:.0f} s …", flush=True)
            figures["warm_up"] = warm_up(stack, signed, seconds=warmup_s)
            if settle_s > 0:
                print(f"warming up until the broker's JIT is quiet (at most {settle_s:.0f} s) …")
                figures["warm_up"] |= settle(stack, signed, most_s=settle_s)
                print(f"  {figures['warm_up']}", flush=True)
            guess: dict[str, float] = {}
            results = []
            for index in range(runs):
                print(f"run {index + 1} of {runs}", flush=True)
                results.append(one_run(stack, signed, seconds=seconds, guess=guess))
        figures["each_run"] = results
        figures["median"] = median_of(results)
    out = args.json or Path(tempfile.gettempdir()) / "anchorline-throughput.json"
    out.write_text(json.dumps(figures, indent=2))
    print_table(figures)
    print(f"\nfigures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
