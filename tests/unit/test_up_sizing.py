"""`anchorline up` runs as many verifiers as the machine has CPUs to share the partitions evenly."""

from __future__ import annotations

from collections import Counter

import pytest

from anchorline.cli.up import even_share, process_names
from anchorline.settings import Settings


@pytest.mark.parametrize(
    ("partitions", "cpus", "processes"),
    [(6, 1, 1), (6, 2, 2), (6, 4, 3), (6, 8, 6), (3, 2, 1), (12, 4, 4), (1, 8, 1)],
)
def test_processes_split_the_partitions_evenly(partitions: int, cpus: int, processes: int) -> None:
    assert even_share(partitions, cpus) == processes
    assert partitions % processes == 0


def test_the_default_runs_one_verifier_a_cpu_and_one_of_each_other_service() -> None:
    services = Counter(process_names(Settings(), cpus=2).values())
    assert services == {
        "verifier": 2,
        "gateway": 1,
        "prover": 1,
        "chain-writer": 1,
        "projector": 1,
        "notifier": 1,
        "scheduler": 1,
    }


def test_verifier_processes_overrides_the_cpu_count() -> None:
    names = process_names(Settings(verifier_processes=3), cpus=16)
    assert sorted(name for name, service in names.items() if service == "verifier") == [
        "verifier",
        "verifier-2",
        "verifier-3",
    ]
