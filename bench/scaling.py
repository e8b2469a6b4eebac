"""Does a second verifier process help when the verifier is the bottleneck?

    .venv/bin/python bench/scaling.py [--processes 1,2] [--content-kib 1024] [--runs 3]
                                      [--seconds 10] [--warmup-s 60] [--settle-s 240]
                                      [--json PATH]

For each verifier count it starts the real stack as `anchorline up` runs it (PostgreSQL, Kafka,
anvil with the registry deployed, the services as separate processes) with
`ANCHORLINE_VERIFIER_PROCESSES` set to that count, checks how the verifiers share the request
topic's partitions, warms the broker until its JIT is quiet (perf/warm.py), and measures verify
jobs with large contents (1 MiB: hashing them is the verifier's work) produced straight to the
request topic until each one's row is terminal: jobs/s end to end (the median of --runs), the
CPU a job of each process, and each count's rate as a ratio to the first count's (the issue's
target: two verifiers at least 1.7 times one). The raw limit of the verify handler alone at that
size (one process, no Kafka, no database) is measured beside them. `anchorline up`'s other
defaults stay.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from perf import measure
from perf.jobs import signed_contents
from perf.measure import MIN_JOBS, run_workload
from perf.raw import raw_limits
from perf.stack import Stack, running_stack
from perf.warm import settle, warm_up

from anchorline.events import JobKind
from anchorline.stream.kafka import client_config

VERIFIER_GROUP = "anchorline-verifier"
SHARE_WAIT_S = 60.0


def shares(stack: Stack, processes: int) -> list[int]:
    """How many request partitions each verifier holds, once `processes` of them have joined
    (sorted, largest first); whatever is seen after SHARE_WAIT_S if they never all do."""
    admin = AdminClient(client_config(stack.settings))
    deadline, seen = time.monotonic() + SHARE_WAIT_S, []
    while time.monotonic() < deadline:
        try:
            group = admin.describe_consumer_groups([VERIFIER_GROUP])[VERIFIER_GROUP].result(10)
        except KafkaException:
            time.sleep(1)
            continue
        seen = sorted((len(m.assignment.topic_partitions) for m in group.members), reverse=True)
        if len(seen) == processes and str(group.state.name).lower() == "stable":
            return seen
        time.sleep(1)
    return seen


def measure_count(
    processes: int,
    *,
    content_kib: int,
    runs: int,
    seconds: float,
    warmup_s: float,
    settle_s: float,
) -> dict[str, Any]:
    os.environ["ANCHORLINE_VERIFIER_PROCESSES"] = str(processes)
    with tempfile.TemporaryDirectory(prefix="anchorline-scaling-") as tmp:
        print(f"{processes} verifier(s): starting the stack in {tmp} …", flush=True)
        with running_stack(Path(tmp)) as stack:
            signed = signed_contents(stack.settings.blobs, size=content_kib * 1024)
            split = shares(stack, processes)
            print(f"  request partitions a verifier holds: {split}", flush=True)
            raw = raw_limits(stack.settings, stack.registry_address, signed, seconds=5)["verify"]
            print(f"  raw verify limit: {raw['jobs_s']:,.0f} jobs/s", flush=True)
            print(f"  warming up for {warmup_s:.0f} s …", flush=True)
            warm = warm_up(stack, signed, seconds=warmup_s)
            if settle_s > 0:
                warm |= settle(stack, signed, most_s=settle_s)
                print(f"  until the broker's JIT was quiet: {warm}", flush=True)
            guess = max(warm.get("full_speed_jobs_s", raw["jobs_s"]), 1.0)
            rates, cpu = [], []
            for index in range(runs):
                outcome = run_workload(
                    stack,
                    "verify (Kafka)",
                    measure.kafka_jobs(
                        stack, signed, JobKind.VERIFY, max(MIN_JOBS, int(guess * seconds))
                    ),
                )
                if outcome.terminal < outcome.jobs:
                    raise RuntimeError(f"{outcome.jobs - outcome.terminal} jobs never finished")
                guess = outcome.e2e_jobs_s
                rates.append(outcome.e2e_jobs_s)
                cpu.append(outcome.cpu_ms_per_job)
                print(f"  run {index + 1}: {outcome.e2e_jobs_s:,.0f} jobs/s", flush=True)
    parts = sorted({part for one in cpu for part in one})
    return {
        "processes": processes,
        "partitions_held": split,
        "raw_verify": raw,
        "warm_up": warm,
        "jobs_s_runs": rates,
        "jobs_s": statistics.median(rates),
        "cpu_ms_per_job": {
            part: statistics.median(one.get(part, 0.0) for one in cpu) for part in parts
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2", help="verifier counts to compare (1,2)")
    parser.add_argument("--content-kib", type=int, default=1024, help="each job's content (1024)")
    parser.add_argument("--runs", type=int, default=3, help="runs to take the median of (3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run (10)")
    parser.add_argument("--warmup-s", type=float, default=60.0, help="load before the runs (60)")
    parser.add_argument(
        "--settle-s",
        type=float,
        default=240.0,
        help="at most this much more warm-up until the broker's JIT is quiet (240)",
    )
    parser.add_argument("--json", type=Path, help="where to write the figures")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    figures: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "content_kib": args.content_kib,
        "runs": args.runs,
        "seconds": args.seconds,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "counts": [
            measure_count(
                n,
                content_kib=args.content_kib,
                runs=args.runs,
                seconds=args.seconds,
                warmup_s=args.warmup_s,
                settle_s=args.settle_s,
            )
            for n in counts
        ],
    }
    out = args.json or Path(tempfile.gettempdir()) / "anchorline-scaling.json"
    out.write_text(json.dumps(figures, indent=2))
    base = figures["counts"][0]["jobs_s"]
    print(
        f"\n{args.content_kib} KiB contents, verify through Kafka, median of {args.runs} run(s)"
        f" of ~{args.seconds:g} s, {figures['cpus']} CPUs"
    )
    print(f"{'verifiers':>9} {'partitions':>12} {'jobs/s':>8} {'x first':>8}  CPU ms a job")
    for count in figures["counts"]:
        cpu = ", ".join(
            f"{part} {ms:.2f}" for part, ms in count["cpu_ms_per_job"].items() if ms >= 0.01
        )
        held = "/".join(str(n) for n in count["partitions_held"]) or "?"
        print(
            f"{count['processes']:>9} {held:>12} {count['jobs_s']:>8,.0f}"
            f" {count['jobs_s'] / base:>8.2f}  {cpu}"
        )
    print(f"\nfigures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
