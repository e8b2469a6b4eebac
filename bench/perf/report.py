"""The benchmark's one table: each figure beside the raw limit measured in the same run."""

from __future__ import annotations

from typing import Any

BASE = {"verify": "verify", "proof": "proof", "anchor": "proof"}
LATENCY = "verify latency"
PARTS = ("gateway", "verifier", "prover", "chain-writer", "projector", "kafka", "postgres", "anvil")


def _ms(lat: dict[str, float]) -> str:
    return f"{lat['p50']:,.0f} / {lat['p99']:,.0f} / {lat['p99.9']:,.0f}" if lat else "-"


def print_table(figures: dict[str, Any]) -> None:
    median = figures["median"]
    raw = median["raw"]
    info = figures["machine"]
    print(
        f"\nmedian of {figures['runs']} run(s), ~{figures['seconds']:g} s a workload, "
        f"{info['cpus']} CPUs, load {info['load_avg_at_start']} at start"
    )
    warm = figures.get("warm_up", {})
    if "settle_s" in warm:
        print(
            f"warm-up {figures['warmup_s']:g} s, then {warm['settle_s']:g} s more until the "
            f"broker's JIT compiler used {100 * warm['jit_cpu_share']:.0f} % of a CPU"
        )
    print(
        f"raw limit (one process, no Kafka, no DB): verify {raw['verify']['jobs_s']:,.0f} jobs/s "
        f"({raw['verify']['cpu_ms_per_job']:.2f} CPU ms/job), prove {raw['prove']['jobs_s']:,.0f} "
        f"jobs/s, proof (both) {raw['proof']['jobs_s']:,.0f} jobs/s\n"
    )
    header = f"{'workload':34} {'jobs':>7} {'ingest/s':>9} {'e2e jobs/s':>11} {'x raw':>6}"
    print(header + "  latency p50 / p99 / p99.9 ms")
    for row in median["workloads"]:
        limit = raw[BASE[row["name"].split()[0]]]["jobs_s"]
        ingest = f"{row['ingest_jobs_s']:,.0f}" if row["ingest_jobs_s"] else "-"
        # Under a burst, latency is mostly time in the queue: shown for the fixed rate only.
        lat = row["latency_ms"] if row["name"].startswith(LATENCY) else {}
        latency = _ms(lat)
        lost = (
            ""
            if row["terminal"] >= row["jobs"]
            else f"  ({row['jobs'] - row['terminal']:.0f} not terminal)"
        )
        print(
            f"{row['name']:34} {row['jobs']:>7,.0f} {ingest:>9} {row['e2e_jobs_s']:>11,.0f}"
            f" {row['e2e_jobs_s'] / limit:>6.2f}  {latency}{lost}"
        )
    fixed = next((row for row in median["workloads"] if row["name"].startswith(LATENCY)), None)
    if fixed and fixed.get("to_outcome_ms"):
        print(
            f"  of which submit → outcome produced {_ms(fixed['to_outcome_ms'])}, "
            f"outcome → terminal row {_ms(fixed['outcome_to_row_ms'])}"
        )
    wait = median["prefer_wait_ms"]
    print(
        f"\nPOST /v1/jobs with Prefer: wait=5 at 10 jobs/s: p50 {wait.get('p50', 0):,.0f} ms, "
        f"p99 {wait.get('p99', 0):,.0f} ms, {wait.get('unfinished', 0):.0f} not finished in time"
    )
    print(f"\nCPU ms per job (raw verify: {raw['verify']['cpu_ms_per_job']:.2f})")
    names = [*PARTS, "bench (client)"]
    print(f"{'workload':34} " + " ".join(f"{name[:9]:>9}" for name in names))
    for row in median["workloads"]:
        cpu = row["cpu_ms_per_job"]
        print(f"{row['name']:34} " + " ".join(f"{cpu.get(name, 0):>9.2f}" for name in names))
