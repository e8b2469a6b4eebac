"""A broker of three lost under load: the leader of `jobs.requested` and of the transaction
log killed with kill -9 and brought back, then every broker restarted in turn.

Jobs go in through the gateway, so that its 202s can be held to what Kafka kept. Each test
submits ANCHORLINE_FAULT_CLUSTER_JOBS jobs (default 600) over ANCHORLINE_FAULT_CLUSTER_LOAD_S
seconds (default 45), and prints, besides the usual summary, how long each stage went without
an outcome, the jobs table without a new terminal row, and the gateway without a 202.

On their own: .venv/bin/pytest -m slow -s tests/faults/test_replicated_kafka.py
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from conftest import MakeCluster
from fault_harness import Cluster, Summary, Workload, check
from gateway_load import GatewaySubmitter
from stalls import StallMeter, describe

from anchorline.stream.watchdog import EXIT_HUNG

pytestmark = [pytest.mark.slow, pytest.mark.integration]

JOBS = int(os.environ.get("ANCHORLINE_FAULT_CLUSTER_JOBS", "600"))
LOAD_S = float(os.environ.get("ANCHORLINE_FAULT_CLUSTER_LOAD_S", "45"))
TIMEOUT_S = 240 + JOBS / 10
DOWN_S = 8.0  # longer than a consumer's session (10 s would be a restart, not an outage)
STALL_S = 120.0  # no job ending for this long is a hang, not a failover


def run_on_three_brokers(
    cluster: Cluster,
    scenario: str,
    fault: Callable[[], list[str]],
    capsys: pytest.CaptureFixture[str],
) -> Summary:
    """Submit the load through the gateway, run `fault` a quarter of the way in, wait for
    every accepted job to end, check it, and note the stalls."""
    workload = Workload.create(cluster.settings.blobs)
    load = GatewaySubmitter(cluster.gateway_url)
    started = time.monotonic()
    with StallMeter(cluster, lambda: set(load.accepted)) as meter:
        load.start(workload, JOBS, rate=JOBS / LOAD_S)
        load.wait_sent(JOBS // 4)
        cluster.wait_progress(lambda: set(load.accepted), 1, total=JOBS, timeout=120)
        fault_at, fault_wall = time.monotonic(), datetime.now(UTC)
        notes = fault()
        load.join()
        # Every 202 is a job Kafka kept: each must end in the table (check() counts it lost).
        cluster.wait_terminal(dict(load.accepted), timeout=TIMEOUT_S)
    summary = check(cluster, scenario, dict(load.accepted))
    summary.seconds = time.monotonic() - started
    summary.notes += notes
    summary.notes.append(describe(cluster, meter, fault_at=fault_at, fault_wall=fault_wall))
    summary.notes.append(
        f"gateway: {len(load.accepted)} of {load.sent} answered 202, others {dict(load.refused)}, "
        f"longest without a 202 {load.longest_silence():.1f} s"
    )
    crashes = {n: c for n, c in cluster.unexpected_exits().items() if set(c) - {EXIT_HUNG}}
    if cluster.unexpected_exits():
        summary.notes.append(f"exited on their own (restarted): {cluster.unexpected_exits()}")
    with capsys.disabled():
        print(f"\n{summary.line()}", flush=True)
    summary.assert_clean()
    assert load.accepted, "the gateway accepted nothing"
    assert meter.longest < STALL_S, f"no job ended for {meter.longest:.0f} s: {summary.line()}"
    # A stage may end itself when librdkafka blocks its commit (the watchdog's exit code 70,
    # confluentinc/librdkafka#5456); any other exit is a crash.
    assert not crashes, f"{summary.line()}\n{cluster.tracebacks(crashes)}"
    return summary


def test_kill_the_leading_broker_of_three(make_cluster: MakeCluster, capsys) -> None:
    cluster = make_cluster(brokers=3, gateway=True)

    def fault() -> list[str]:
        node, led = cluster.leading_broker()
        broker = cluster.kafka.node(node)
        began = time.monotonic()
        broker.kill()
        time.sleep(DOWN_S)
        broker.start()
        back = time.monotonic() - began
        cluster.kafka.wait_in_sync()
        return [
            f"kill -9 broker {node} (leader of {led}), down {DOWN_S:.0f} s, serving again "
            f"{back:.0f} s and in sync {time.monotonic() - began:.0f} s after the kill"
        ]

    run_on_three_brokers(cluster, "kill -9 the leading broker of 3", fault, capsys)


def test_rolling_restart_of_three_brokers(make_cluster: MakeCluster, capsys) -> None:
    cluster = make_cluster(brokers=3, gateway=True)

    def fault() -> list[str]:
        notes = []
        for broker in cluster.kafka.nodes:
            began = time.monotonic()
            broker.stop()  # SIGTERM: a controlled shutdown moves its leaderships first
            broker.start()
            cluster.kafka.wait_in_sync()
            notes.append(f"broker {broker.node_id} {time.monotonic() - began:.0f} s")
        return ["rolling restart, each broker stopped to back in sync: " + ", ".join(notes)]

    run_on_three_brokers(cluster, "rolling restart of 3 brokers", fault, capsys)
