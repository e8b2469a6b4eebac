from __future__ import annotations

from collections.abc import Iterator

import pytest
from system_under_test import System, running_system

from anchorline.infra.postgres import PostgresServer


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[System]:
    """The README's run command (`anchorline up`) with its jobs table on PostgreSQL."""
    with running_system(
        state_dir=tmp_path_factory.mktemp("system"),
        database_url=postgres.new_database("e2e"),
        batch_max_wait_s=1.0,
        # Schedules at a one-second cadence (tests/e2e/test_schedules.py), not once a minute.
        schedule_min_interval_s=1.0,
        scheduler_tick_s=0.2,
    ) as running:
        yield running
